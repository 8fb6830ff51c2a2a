using Propeller.Infrastructure.Messaging;

namespace Propeller.Infrastructure.Tests.Messaging;

public sealed class BatchedMarksTests
{
    [Fact]
    public async Task KeysAddedTogether_AreWrittenInOneCall_AndDisposeWritesWhatIsQueued()
    {
        var writes = new List<int[]>();
        var marks = new BatchedMarks<int>(keys => { lock (writes) { writes.Add(keys); } return Task.CompletedTask; }, _ => { }, TimeSpan.FromMilliseconds(50));
        for (var i = 0; i < 10; i++)
        {
            marks.Add(i);
        }

        await marks.DisposeAsync();

        writes.SelectMany(w => w).ShouldBe(Enumerable.Range(0, 10));
        writes.Count.ShouldBe(1);
    }

    [Fact]
    public async Task AFailedWrite_IsReported_AndLaterKeysAreStillWritten()
    {
        var written = new List<int>();
        var failures = new List<Exception>();
        var marks = new BatchedMarks<int>(
            keys =>
            {
                if (keys.Contains(1))
                {
                    throw new InvalidOperationException("database down");
                }

                lock (written)
                {
                    written.AddRange(keys);
                }

                return Task.CompletedTask;
            },
            failures.Add,
            TimeSpan.Zero,
            maxBatch: 1);
        marks.Add(1);
        marks.Add(2);
        marks.Add(3);

        await marks.DisposeAsync();

        failures.Single().Message.ShouldBe("database down");
        written.ShouldBe([2, 3]);
    }
}
