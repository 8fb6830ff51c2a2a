using System.Text;
using System.Text.Json;
using Propeller.Contracts.Mqtt;
using Propeller.Edge.Fetching;

namespace Propeller.Edge.Tests;

public sealed class ChunkAssemblerTests
{
    private readonly ManualClock _clock = new();

    [Fact]
    public async Task GivenAWaiter_WhenChunksArriveOutOfOrderWithDuplicates_ThenItGetsThemJoinedInIndexOrder()
    {
        var assembler = new ChunkAssembler(1 << 20, _clock);
        var requested = 0;
        var waiting = assembler.WaitAsync("r/add:v1", _ => { requested++; return Task.CompletedTask; }, TimeSpan.FromMinutes(5), TestContext.Current.CancellationToken);

        assembler.Add(Chunk("r/add:v1", 2, 3, [5, 6])).ShouldBeNull();
        assembler.Add(Chunk("r/add:v1", 0, 3, [1, 2])).ShouldBeNull();
        assembler.Add(Chunk("r/add:v1", 0, 3, [9, 9])).ShouldBeNull(); // duplicate: the first copy wins
        waiting.IsCompleted.ShouldBeFalse();
        assembler.Add(Chunk("r/add:v1", 1, 3, [3, 4])).ShouldBeNull();

        (await waiting).Bytes.ShouldBe(new byte[] { 1, 2, 3, 4, 5, 6 });
        requested.ShouldBe(1);
        assembler.Count.ShouldBe(0);
    }

    [Fact]
    public async Task GivenAnImageAssembledBeforeAnyoneAsked_WhenRequestedWithinTheTtl_ThenItIsServedAtOnce()
    {
        var assembler = new ChunkAssembler(1 << 20, _clock);
        assembler.Add(Chunk("img", 0, 1, [7])).ShouldBeNull();

        var bytes = await assembler.WaitAsync("img", _ => throw new InvalidOperationException("no request expected"), TimeSpan.FromSeconds(1), TestContext.Current.CancellationToken);

        bytes.Bytes.ShouldBe(new byte[] { 7 });
    }

    /// <summary>A fetch cancelled before it asks (its task stopped) does not take an image assembled before anyone
    /// asked: it ends as cancelled, and the image stays for the next task that asks. Before, the shortcut returned it
    /// without looking at the token, and the stopped task went on to run it.</summary>
    [Fact]
    public async Task GivenAnImageAssembledBeforeAnyoneAsked_WhenACancelledFetchAsks_ThenItIsCancelled_AndTheImageStays()
    {
        var assembler = new ChunkAssembler(1 << 20, _clock);
        assembler.Add(Chunk("img", 0, 1, [7])).ShouldBeNull();
        using var stopped = new CancellationTokenSource();
        await stopped.CancelAsync();

        await Should.ThrowAsync<OperationCanceledException>(() => assembler.WaitAsync("img", _ => Task.CompletedTask, TimeSpan.FromSeconds(1), stopped.Token));

        var bytes = await assembler.WaitAsync("img", _ => throw new InvalidOperationException("no request expected"), TimeSpan.FromSeconds(1), TestContext.Current.CancellationToken);
        bytes.Bytes.ShouldBe(new byte[] { 7 });
    }

    [Theory]
    [InlineData(null, 0, 1, "AA==", "app_name is required")]
    [InlineData("a", 0, 0, "AA==", "total_chunks 0 is out of range")]
    [InlineData("a", 3, 3, "AA==", "chunk_idx 3 is out of range 0..2")]
    [InlineData("a", -1, 3, "AA==", "chunk_idx -1 is out of range")]
    [InlineData("a", 0, 3, "not base64!", "data is not valid base64")]
    public void GivenABadChunk_WhenAdded_ThenItIsRejectedWithTheReason(string? app, int index, int total, string data, string reason)
    {
        new ChunkAssembler(1 << 20, _clock).Add(new ChunkMessage(app, index, total, data)).ShouldNotBeNull().ShouldStartWith(reason);
    }

    [Fact]
    public void GivenAChunkWhoseTotalDisagreesWithTheFirst_WhenAdded_ThenItIsRejectedAndTheEntryKept()
    {
        var assembler = new ChunkAssembler(1 << 20, _clock);
        assembler.Add(Chunk("a", 0, 2, [1])).ShouldBeNull();

        assembler.Add(Chunk("a", 1, 3, [2])).ShouldBe("total_chunks 3 differs from the first chunk's 2");
        assembler.Count.ShouldBe(1);
    }

    [Fact]
    public async Task GivenRawChunkJson_WhenAdded_ThenItIsDecodedFromTheUtf8AsTheRecordWouldBe()
    {
        var assembler = new ChunkAssembler(1 << 20, _clock);
        var waiting = assembler.WaitAsync("j", _ => Task.CompletedTask, TimeSpan.FromMinutes(1), TestContext.Current.CancellationToken);

        // An escaped '+' (as a serialiser with the default encoder writes it), an unknown field, fields in another order.
        assembler.AddJson("""{"extra":[1,{"a":2}],"chunk_idx":1,"total_chunks":2,"data":"\u002B/8=","app_name":"j"}"""u8).ShouldBeNull();
        assembler.AddJson("""{"app_name":"j","chunk_idx":0,"total_chunks":2,"data":"AQI=","sha256":null}"""u8).ShouldBeNull();

        (await waiting).Bytes.ShouldBe(new byte[] { 1, 2, 251, 255 });
    }

    [Theory]
    [InlineData("nope", "the chunk is not valid JSON")]
    [InlineData("[1]", "the chunk is not a JSON object")]
    [InlineData("""{"app_name":"a","chunk_idx":"0","total_chunks":1,"data":""}""", "the chunk is not valid JSON of the expected shape")]
    [InlineData("""{"app_name":"a","chunk_idx":0,"total_chunks":1,"data":"not base64!"}""", "data is not valid base64")]
    [InlineData("""{"app_name":"a","chunk_idx":0,"total_chunks":1,"data":"AQI"}""", "data is not valid base64")]
    [InlineData("""{"app_name":"a","chunk_idx":0,"total_chunks":1,"data":"AA==AA=="}""", "data is not valid base64")]
    [InlineData("""{"app_name":"a","chunk_idx":0,"total_chunks":1,"data":"A==="}""", "data is not valid base64")]
    [InlineData("""{"chunk_idx":0,"total_chunks":1,"data":""}""", "app_name is required")]
    [InlineData("""{"app_name":"a","chunk_idx":5,"total_chunks":1,"data":""}""", "chunk_idx 5 is out of range 0..0")]
    [InlineData("""{"app_name":"a","chunk_idx":0,"total_chunks":1}""", "the chunk has no data")]
    [InlineData("""{"app_name":"a","total_chunks":1,"data":""}""", "chunk_idx is required")]
    [InlineData("""{"app_name":"a","chunk_idx":0,"data":""}""", "total_chunks is required")]
    [InlineData("""{"app_name":"a","chunk_idx":3000000000,"total_chunks":1,"data":""}""", "chunk_idx 3000000000 is out of range")] // was "not valid base64"
    [InlineData("""{"app_name":"a","chunk_idx":0,"total_chunks":1e12,"data":""}""", "total_chunks 1e12 is out of range")]
    [InlineData("""{"app_name":"a","chunk_idx":0,"total_chunks":1,"size":1e30,"data":""}""", "size 1e30 is out of range")]
    public void GivenBadChunkJson_WhenAdded_ThenItIsRejectedWithTheReason(string json, string reason)
    {
        var assembler = new ChunkAssembler(1 << 20, _clock);

        assembler.AddJson(System.Text.Encoding.UTF8.GetBytes(json)).ShouldNotBeNull().ShouldStartWith(reason);
        assembler.Count.ShouldBe(0);
    }

    /// <summary>A request to the proxy that cannot be sent (a broker refusing it is retried until cancelled) fails the
    /// wait at its time limit, saying so, instead of holding the task for ever.</summary>
    [Fact]
    public async Task GivenARequestThatCannotBeSent_WhenWaiting_ThenTheWaitFailsAtItsLimit()
    {
        var assembler = new ChunkAssembler(1 << 20, TimeProvider.System);

        var failure = await Should.ThrowAsync<TimeoutException>(() => assembler.WaitAsync(
            "refused", (_, ct) => Task.Delay(Timeout.Infinite, ct), TimeSpan.FromMilliseconds(300), TimeSpan.FromMilliseconds(100), TestContext.Current.CancellationToken)
            .WaitAsync(TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken));

        failure.Message.ShouldBe("Timeout asking the proxy for binary chunks: the request could not be sent within 0.3 s");
    }

    /// <summary>A request sent late (held up by the broker) still gets the whole wait for its chunks: the wait starts
    /// once the proxy was asked.</summary>
    [Fact]
    public async Task GivenARequestSentLate_WhenItsChunksFollow_ThenTheWaitSucceeds()
    {
        var assembler = new ChunkAssembler(1 << 20, TimeProvider.System);
        var waiting = assembler.WaitAsync(
            "late", async ct => await Task.Delay(300, ct), TimeSpan.FromMilliseconds(500), TestContext.Current.CancellationToken);
        await Task.Delay(650, TestContext.Current.CancellationToken);

        assembler.Add(Chunk("late", 0, 1, [7])).ShouldBeNull();

        (await waiting).Bytes.ShouldBe(new byte[] { 7 });
    }

    [Fact]
    public async Task GivenAStalledAssembly_WhenWaiting_ThenOnlyTheMissingChunksAreAskedForAgain()
    {
        var assembler = new ChunkAssembler(1 << 20, TimeProvider.System);
        var requests = System.Threading.Channels.Channel.CreateUnbounded<IReadOnlyList<int>?>();
        var waiting = assembler.WaitAsync(
            "img", (missing, _) => { requests.Writer.TryWrite(missing); return Task.CompletedTask; }, TimeSpan.FromMinutes(1), TimeSpan.FromMilliseconds(50), TestContext.Current.CancellationToken);
        (await requests.Reader.ReadAsync(TestContext.Current.CancellationToken)).ShouldBeNull(); // the first request: everything
        assembler.Add(Chunk("img", 1, 4, [2])).ShouldBeNull();
        assembler.Add(Chunk("img", 3, 4, [4])).ShouldBeNull();

        IReadOnlyList<int>? again;
        while ((again = await requests.Reader.ReadAsync(TestContext.Current.CancellationToken)) is null)
        {
            // a stall passed before the first chunks were added: everything was asked for again (the next test)
        }

        again.ShouldBe([0, 2]);
        assembler.Add(Chunk("img", 0, 4, [1])).ShouldBeNull();
        assembler.Add(Chunk("img", 2, 4, [3])).ShouldBeNull();

        (await waiting).Bytes.ShouldBe(new byte[] { 1, 2, 3, 4 });
    }

    [Fact]
    public async Task GivenNoChunkAtAll_WhenStallsPass_ThenTheWholeImageIsAskedForAgainAtGrowingIntervals()
    {
        // The request (or the proxy's answer) was lost, e.g. while the proxy restarted: before, with no assembly to
        // report missing chunks of, nothing was asked again and the task waited for its full timeout.
        var clock = new FakeClock();
        var stall = TimeSpan.FromSeconds(2);
        var assembler = new ChunkAssembler(1 << 20, clock);
        var requests = new System.Collections.Concurrent.ConcurrentQueue<IReadOnlyList<int>?>();
        var waiting = assembler.WaitAsync(
            "lost", (missing, _) => { requests.Enqueue(missing); return Task.CompletedTask; }, TimeSpan.FromMinutes(1), stall, TestContext.Current.CancellationToken);
        var asked = new List<int>();

        for (var timer = 1; timer <= 8; timer++)
        {
            await clock.TimersCreatedAsync(timer); // the assembler waits for the next stall
            asked.Add(requests.Count);
            clock.Advance(stall);
        }

        await clock.TimersCreatedAsync(9);
        asked.Add(requests.Count);
        asked.ShouldBe([1, 2, 2, 3, 3, 3, 3, 4, 4], "asked again after 2 s, 6 s and 14 s");
        requests.ShouldAllBe(r => r == null);
        assembler.Add(Chunk("lost", 0, 1, [7])).ShouldBeNull();
        (await waiting).Bytes.ShouldBe(new byte[] { 7 });
    }

    [Fact]
    public async Task GivenChunksWithTheArtefactsSha256_WhenTheyMatch_ThenTheWaiterGetsTheBytes()
    {
        var assembler = new ChunkAssembler(1 << 20, _clock);
        var sha = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(new byte[] { 1, 2, 3 }));
        var waiting = assembler.WaitAsync("ok", _ => Task.CompletedTask, TimeSpan.FromMinutes(1), TestContext.Current.CancellationToken);

        assembler.Add(Chunk("ok", 0, 2, [1, 2]) with { Sha256 = sha }).ShouldBeNull();
        assembler.Add(Chunk("ok", 1, 2, [3]) with { Sha256 = sha.ToUpperInvariant() }).ShouldBeNull();

        (await waiting).Bytes.ShouldBe(new byte[] { 1, 2, 3 });
    }

    /// <summary>A proxy serving a cached tag that moved meanwhile withholds the old artefact's last chunk and sends the
    /// new one: a chunk with another sha256 than an incomplete assembly's starts over with the newer artefact, which
    /// the waiting task gets.</summary>
    [Fact]
    public async Task GivenAnIncompleteAssembly_WhenAChunkWithAnotherSha256Arrives_ThenTheNewerArtefactReplacesIt()
    {
        var assembler = new ChunkAssembler(1 << 20, _clock);
        var waiting = assembler.WaitAsync("a", _ => Task.CompletedTask, TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken);
        var newer = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(new byte[] { 7, 8, 9 }));
        assembler.Add(Chunk("a", 0, 2, [1]) with { Sha256 = "aa" }).ShouldBeNull();

        assembler.Add(Chunk("a", 0, 3, [7]) with { Sha256 = newer }).ShouldBeNull();
        assembler.Add(Chunk("a", 1, 3, [8]) with { Sha256 = newer }).ShouldBeNull();
        assembler.Add(Chunk("a", 2, 3, [9]) with { Sha256 = newer }).ShouldBeNull();

        (await waiting).Bytes.ShouldBe(new byte[] { 7, 8, 9 });
    }

    /// <summary>An image assembled that nobody claimed yet, and a delivery of another artefact under its name (the tag
    /// moved): the newer artefact is assembled and is what a task gets. Before, its chunks were dropped as a re-delivery
    /// and a task within the TTL got the old image without asking the proxy.</summary>
    [Fact]
    public async Task GivenAnUnclaimedAssembledImage_WhenAnotherArtefactIsDeliveredUnderItsName_ThenTheNewerOneIsServed()
    {
        var assembler = new ChunkAssembler(1 << 20, _clock);
        static string Sha(params byte[] bytes) => Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(bytes));
        assembler.Add(Chunk("moved", 0, 1, [1]) with { Sha256 = Sha(1) }).ShouldBeNull();

        assembler.Add(Chunk("moved", 0, 2, [7]) with { Sha256 = Sha(7, 8) }).ShouldBeNull();
        assembler.Add(Chunk("moved", 1, 2, [8]) with { Sha256 = Sha(7, 8) }).ShouldBeNull();

        var image = await assembler.WaitAsync("moved", _ => throw new InvalidOperationException("no request expected"), TimeSpan.FromSeconds(1), TestContext.Current.CancellationToken);
        image.Bytes.ShouldBe(new byte[] { 7, 8 });
    }

    /// <summary>The assemblies nobody waits for (images the other proplets asked for) are held within twice the binary
    /// size limit together: the oldest go first, one being waited for stays. Before, each was bounded alone.</summary>
    [Fact]
    public async Task GivenAssembliesNobodyWaitsFor_WhenTheyPassTwiceTheSizeLimit_ThenTheOldestAreDropped()
    {
        var assembler = new ChunkAssembler(100, _clock);
        var ct = TestContext.Current.CancellationToken;
        var waited = assembler.WaitAsync("waited", _ => Task.CompletedTask, TimeSpan.FromMinutes(1), ct);
        assembler.Add(Chunk("waited", 0, 2, new byte[90])).ShouldBeNull();
        foreach (var app in new[] { "old", "middle", "new" })
        {
            assembler.Add(Chunk(app, 0, 1, new byte[90])).ShouldBeNull();
            _clock.Advance(TimeSpan.FromSeconds(1));
        }

        assembler.Add(Chunk("partial", 0, 2, new byte[30])).ShouldBeNull();

        assembler.Evicted.ShouldBe(2); // 90 + 90 + 90 + 30 over 200: "old", then "middle"
        assembler.Count.ShouldBe(3);
        (await assembler.WaitAsync("new", _ => throw new InvalidOperationException("held"), TimeSpan.FromSeconds(1), ct)).Bytes.Length.ShouldBe(90);
        assembler.Add(Chunk("waited", 1, 2, new byte[5])).ShouldBeNull();
        (await waited).Bytes.Length.ShouldBe(95);
    }

    [Fact]
    public void GivenAFailureForAnImageNobodyWaitsFor_WhenReported_ThenThePartialAssemblyIsDropped()
    {
        var assembler = new ChunkAssembler(1 << 20, _clock);
        assembler.Add(Chunk("p", 0, 2, [1])).ShouldBeNull();

        assembler.Fail("p", "gone").ShouldBe(0);

        assembler.Count.ShouldBe(0);
    }

    [Fact]
    public async Task GivenAnAssemblyOverTheSizeCap_WhenItGrows_ThenTheWaiterFails()
    {
        var assembler = new ChunkAssembler(3, _clock);
        var waiting = assembler.WaitAsync("big", _ => Task.CompletedTask, TimeSpan.FromMinutes(5), TestContext.Current.CancellationToken);

        assembler.Add(Chunk("big", 0, 2, [1, 2, 3, 4])).ShouldNotBeNull().ShouldContain("exceeds 3 bytes");

        (await Should.ThrowAsync<InvalidDataException>(waiting)).Message.ShouldContain("larger than the 3 byte limit");
    }

    [Fact]
    public void GivenEntriesOlderThanTheTtl_WhenSwept_ThenOnlyThoseAreDropped()
    {
        var assembler = new ChunkAssembler(1 << 20, _clock);
        assembler.Add(Chunk("old", 0, 3, [1])).ShouldBeNull();
        _clock.Advance(TimeSpan.FromMinutes(4));
        assembler.Add(Chunk("new", 0, 2, [1])).ShouldBeNull();
        _clock.Advance(TimeSpan.FromMinutes(2));

        assembler.Sweep(TimeSpan.FromMinutes(5)).ShouldBe([("old", 1, 3)]);
        assembler.Count.ShouldBe(1);
    }

    /// <summary>
    /// An assembly a task waits for is not swept past the TTL (PROPLET_CHUNK_TTL shorter than PROPLET_CHUNK_WAIT): its
    /// wait ends it. Before, the chunks received so far were dropped and the fetch had to get them all again, or ran out
    /// of time.
    /// </summary>
    [Fact]
    public async Task GivenAnAssemblyATaskWaitsFor_WhenOlderThanTheTtl_ThenTheSweepLeavesIt()
    {
        var assembler = new ChunkAssembler(1 << 20, _clock);
        var waiting = assembler.WaitAsync("slow", _ => Task.CompletedTask, TimeSpan.FromMinutes(10), TestContext.Current.CancellationToken);
        assembler.Add(Chunk("slow", 0, 2, [1])).ShouldBeNull();
        _clock.Advance(TimeSpan.FromMinutes(6));

        assembler.Sweep(TimeSpan.FromMinutes(5)).ShouldBeEmpty();
        assembler.Add(Chunk("slow", 1, 2, [2])).ShouldBeNull();

        (await waiting).Bytes.ShouldBe(new byte[] { 1, 2 });
    }

    [Fact]
    public async Task GivenNoChunksEver_WhenTheWaitEnds_ThenTheErrorIsTheOriginals()
    {
        var assembler = new ChunkAssembler(1 << 20, TimeProvider.System);

        var error = await Should.ThrowAsync<TimeoutException>(
            assembler.WaitAsync("nothing", _ => Task.CompletedTask, TimeSpan.FromMilliseconds(50), TestContext.Current.CancellationToken));

        error.Message.ShouldBe("Timeout waiting for binary chunks");
    }

    [Fact]
    public async Task GivenChunksAnnouncingTheSize_WhenTheyArriveLastFirstWithDuplicates_ThenTheyAreDecodedIntoPlaceAndTheDigestGoesWithThem()
    {
        var assembler = new ChunkAssembler(1 << 20, _clock);
        byte[] image = [1, 2, 3, 4, 5, 6, 7];
        var sha = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(image));
        var waiting = assembler.WaitAsync("s", _ => Task.CompletedTask, TimeSpan.FromMinutes(1), TestContext.Current.CancellationToken);

        assembler.Add(Chunk("s", 2, 3, [7]) with { Sha256 = sha.ToUpperInvariant(), Size = 7 }).ShouldBeNull();
        assembler.AddJson(System.Text.Encoding.UTF8.GetBytes($$"""{"app_name":"s","chunk_idx":1,"total_chunks":3,"data":"BAUG","sha256":"{{sha}}","size":7}""")).ShouldBeNull();
        assembler.Add(Chunk("s", 1, 3, [9, 9, 9]) with { Sha256 = sha, Size = 7 }).ShouldBeNull(); // duplicate: the first copy wins
        // An escaped token goes the reader's way, then into place.
        assembler.AddJson(System.Text.Encoding.UTF8.GetBytes($$"""{"app_name":"s","chunk_idx":0,"total_chunks":3,"data":"AQ\u0049D","sha256":"{{sha}}","size":7}""")).ShouldBeNull();

        var fetched = await waiting;
        fetched.Bytes.ShouldBe(image);
        fetched.Sha256.ShouldBe(sha);
    }

    [Theory]
    [InlineData(7)] // the chunks' lengths do not add up to it
    [InlineData(3)] // smaller than what the chunks carry
    public async Task GivenChunksWhoseLengthsDoNotFitTheAnnouncedSize_WhenAssembled_ThenTheyAreJoinedAndJudgedByTheSha256(long size)
    {
        var assembler = new ChunkAssembler(1 << 20, _clock);
        byte[] image = [1, 2, 3, 4, 5];
        var sha = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(image));
        var waiting = assembler.WaitAsync("u", _ => Task.CompletedTask, TimeSpan.FromMinutes(1), TestContext.Current.CancellationToken);

        assembler.Add(Chunk("u", 0, 3, [1, 2]) with { Sha256 = sha, Size = size }).ShouldBeNull();
        assembler.Add(Chunk("u", 2, 3, [5]) with { Sha256 = sha, Size = size }).ShouldBeNull();
        assembler.Add(Chunk("u", 1, 3, [3, 4]) with { Sha256 = sha, Size = size }).ShouldBeNull();

        (await waiting).Bytes.ShouldBe(image);
    }

    [Fact]
    public async Task GivenSizedChunksOfUnequalLength_WhenAssembled_ThenACorruptImageStillFailsVerification()
    {
        var assembler = new ChunkAssembler(1 << 20, _clock);
        var sha = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(new byte[] { 1, 2, 3, 4 }));
        var waiting = assembler.WaitAsync("c", _ => Task.CompletedTask, TimeSpan.FromMinutes(1), TestContext.Current.CancellationToken);

        assembler.Add(Chunk("c", 0, 2, [1, 2]) with { Sha256 = sha, Size = 4 }).ShouldBeNull();
        assembler.Add(Chunk("c", 1, 2, [3, 4, 5]) with { Sha256 = sha, Size = 4 }).ShouldNotBeNull().ShouldContain("failed verification");

        (await Should.ThrowAsync<InvalidDataException>(waiting)).Message.ShouldContain("failed verification");
    }

    [Fact]
    public void GivenAChunkAnnouncingAnotherSizeThanTheFirst_WhenAdded_ThenItIsRejected()
    {
        var assembler = new ChunkAssembler(1 << 20, _clock);
        assembler.Add(Chunk("a", 0, 2, [1]) with { Size = 2 }).ShouldBeNull();

        assembler.Add(Chunk("a", 1, 2, [2]) with { Size = 3 }).ShouldBe("size 3 differs from the first chunk's 2");
    }

    [Fact]
    public async Task GivenASizeOverTheCap_WhenChunksArrive_ThenTheWaiterFailsAsTheAssemblyGrows()
    {
        var assembler = new ChunkAssembler(3, _clock);
        var waiting = assembler.WaitAsync("big", _ => Task.CompletedTask, TimeSpan.FromMinutes(5), TestContext.Current.CancellationToken);

        assembler.Add(Chunk("big", 0, 2, [1, 2]) with { Size = 4 }).ShouldBeNull();
        assembler.Add(Chunk("big", 1, 2, [3, 4]) with { Size = 4 }).ShouldNotBeNull().ShouldContain("exceeds 3 bytes");

        (await Should.ThrowAsync<InvalidDataException>(waiting)).Message.ShouldContain("larger than the 3 byte limit");
    }

    [Fact]
    public async Task GivenAVerifiedImageHeld_WhenADeliveryAnnouncesItsSha256_ThenTheWaiterGetsItAtTheFirstChunkAndTheRestIsDropped()
    {
        var assembler = new ChunkAssembler(1 << 20, _clock, imageCacheBytes: 1 << 10);
        byte[] image = [1, 2, 3, 4, 5];
        var sha = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(image));
        var first = assembler.WaitAsync("i:v1", _ => Task.CompletedTask, TimeSpan.FromMinutes(1), TestContext.Current.CancellationToken);
        assembler.Add(Chunk("i:v1", 0, 2, [1, 2, 3]) with { Sha256 = sha, Size = 5 }).ShouldBeNull();
        assembler.Add(Chunk("i:v1", 1, 2, [4, 5]) with { Sha256 = sha, Size = 5 }).ShouldBeNull();
        var assembled = await first;
        assembler.VerifiedBytes.ShouldBe(5);

        // Another task for the same image: the proxy is asked again, and the delivery's first chunk (any index) serves it.
        var requested = 0;
        var again = assembler.WaitAsync("i:v1", _ => { requested++; return Task.CompletedTask; }, TimeSpan.FromMinutes(1), TestContext.Current.CancellationToken);
        assembler.AddJson(System.Text.Encoding.UTF8.GetBytes($$"""{"app_name":"i:v1","chunk_idx":1,"total_chunks":2,"data":"BAU=","sha256":"{{sha.ToUpperInvariant()}}","size":5}""")).ShouldBeNull();

        var served = await again;
        requested.ShouldBe(1);
        served.Bytes.ShouldBeSameAs(assembled.Bytes);
        served.Sha256.ShouldBe(sha);
        assembler.Count.ShouldBe(1); // the rest of that delivery goes by undecoded (even a corrupt chunk) ...
        assembler.Add(Chunk("i:v1", 0, 2, [9, 9, 9]) with { Sha256 = sha, Size = 5 }).ShouldBeNull();
        assembler.Count.ShouldBe(0); // ... and the entry ends with it
    }

    [Fact]
    public async Task GivenAServedDeliveryStillArriving_WhenTheNameNowHasAnotherSha256_ThenThatIsAssembledAndVerifiedAsADeliveryOfItsOwn()
    {
        var assembler = new ChunkAssembler(1 << 20, _clock, imageCacheBytes: 1 << 10);
        byte[] old = [1, 2];
        var oldSha = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(old));
        var first = assembler.WaitAsync("t:latest", _ => Task.CompletedTask, TimeSpan.FromMinutes(1), TestContext.Current.CancellationToken);
        assembler.Add(Chunk("t:latest", 0, 1, old) with { Sha256 = oldSha, Size = 2 }).ShouldBeNull();
        await first;
        var second = assembler.WaitAsync("t:latest", _ => Task.CompletedTask, TimeSpan.FromMinutes(1), TestContext.Current.CancellationToken);
        assembler.Add(Chunk("t:latest", 0, 3, [1]) with { Sha256 = oldSha, Size = 3 }).ShouldBeNull(); // size differs: not the held image
        assembler.Count.ShouldBe(1);
        assembler.Fail("t:latest", "gone").ShouldBe(1);
        (await Should.ThrowAsync<InvalidDataException>(second)).Message.ShouldBe("gone");

        var third = assembler.WaitAsync("t:latest", _ => Task.CompletedTask, TimeSpan.FromMinutes(1), TestContext.Current.CancellationToken);
        assembler.Add(Chunk("t:latest", 0, 2, [1, 2]) with { Sha256 = oldSha, Size = 2 }).ShouldBeNull(); // served from the held image
        (await third).Bytes.ShouldBe(old);
        byte[] moved = [3, 4];
        var movedSha = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(moved));
        var fourth = assembler.WaitAsync("t:latest", _ => Task.CompletedTask, TimeSpan.FromMinutes(1), TestContext.Current.CancellationToken);
        assembler.Add(Chunk("t:latest", 0, 2, [3]) with { Sha256 = movedSha, Size = 2 }).ShouldBeNull();
        assembler.Add(Chunk("t:latest", 1, 2, [5]) with { Sha256 = movedSha, Size = 2 }).ShouldNotBeNull().ShouldContain("failed verification");

        (await Should.ThrowAsync<InvalidDataException>(fourth)).Message.ShouldContain("failed verification");
    }

    [Theory]
    [InlineData(0)] // none kept
    [InlineData(4)] // smaller than the image
    public async Task GivenNoRoomForVerifiedImages_WhenTheSameImageComesAgain_ThenItIsAssembledAndVerifiedAgain(long imageCacheBytes)
    {
        var assembler = new ChunkAssembler(1 << 20, _clock, imageCacheBytes);
        byte[] image = [1, 2, 3, 4, 5];
        var sha = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(image));
        for (var round = 0; round < 2; round++)
        {
            var waiting = assembler.WaitAsync("n", _ => Task.CompletedTask, TimeSpan.FromMinutes(1), TestContext.Current.CancellationToken);
            assembler.Add(Chunk("n", 0, 2, [1, 2, 3]) with { Sha256 = sha, Size = 5 }).ShouldBeNull();
            waiting.IsCompleted.ShouldBeFalse();
            assembler.Add(Chunk("n", 1, 2, [4, 5]) with { Sha256 = sha, Size = 5 }).ShouldBeNull();
            (await waiting).Bytes.ShouldBe(image);
        }

        assembler.VerifiedBytes.ShouldBe(0);
    }

    [Fact]
    public async Task GivenVerifiedImagesOverTheBound_WhenAnotherIsAdded_ThenTheLeastRecentlyUsedMakesRoom()
    {
        var assembler = new ChunkAssembler(1 << 20, _clock, imageCacheBytes: 4);
        async Task<FetchedBinary> FetchAsync(string app, byte[] image)
        {
            var sha = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(image));
            var waiting = assembler.WaitAsync(app, _ => Task.CompletedTask, TimeSpan.FromMinutes(1), TestContext.Current.CancellationToken);
            assembler.Add(Chunk(app, 0, 1, image) with { Sha256 = sha }).ShouldBeNull();
            return await waiting;
        }

        await FetchAsync("a", [1, 1]);
        await FetchAsync("b", [2, 2]);
        await FetchAsync("a", [1, 1]); // held: a is now the most recent
        await FetchAsync("c", [3, 3]); // b makes room

        assembler.VerifiedBytes.ShouldBe(4);
        var b = assembler.WaitAsync("b", _ => Task.CompletedTask, TimeSpan.FromMinutes(1), TestContext.Current.CancellationToken);
        assembler.Add(Chunk("b", 0, 1, [9, 9]) with { Sha256 = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(new byte[] { 2, 2 })) })
            .ShouldNotBeNull().ShouldContain("failed verification"); // not held any more: assembled and checked
        await Should.ThrowAsync<InvalidDataException>(b);
    }

    [Fact]
    public void GivenFirstChunksAnnouncingHugeImagesNobodyAskedFor_WhenAdded_ThenMemoryGrowsWithWhatArrivedNotWithWhatWasAnnounced()
    {
        var assembler = new ChunkAssembler(100 << 20, _clock);
        var before = GC.GetAllocatedBytesForCurrentThread();

        for (var i = 0; i < 5; i++)
        {
            assembler.Add(Chunk($"flood-{i}", 0, 100_000, new byte[200]) with { Size = 100 << 20 }).ShouldBeNull();
        }

        (GC.GetAllocatedBytesForCurrentThread() - before).ShouldBeLessThan(10 << 20); // not 5 × 100 MiB
        assembler.Count.ShouldBe(5);
    }

    [Fact]
    public async Task GivenALargerImageNobodyAskedForYet_WhenItsChunksArriveAnnouncingItsSize_ThenItIsStillAssembledAndVerified()
    {
        var assembler = new ChunkAssembler(100 << 20, _clock);
        var image = new byte[(int)ChunkAssembler.UnclaimedImageCap + 3];
        Random.Shared.NextBytes(image);
        var sha = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(image));
        var half = image.Length / 2 + 1;

        assembler.Add(Chunk("later", 1, 2, image[half..]) with { Sha256 = sha, Size = image.Length }).ShouldBeNull();
        assembler.Add(Chunk("later", 0, 2, image[..half]) with { Sha256 = sha, Size = image.Length }).ShouldBeNull();

        var fetched = await assembler.WaitAsync("later", _ => Task.CompletedTask, TimeSpan.FromMinutes(1), TestContext.Current.CancellationToken);
        fetched.Bytes.ShouldBe(image);
        fetched.Sha256.ShouldBe(sha);
    }

    /// <summary>A chunk without <c>chunk_idx</c> before the real ones: rejected, and the image assembles from them. It was
    /// taken as chunk 0, and the real chunk 0 was then dropped as its duplicate (the first copy wins).</summary>
    [Fact]
    public async Task GivenAChunkWithoutItsIndex_WhenTheRealChunksFollow_ThenItIsRejectedAndTheImageAssembles()
    {
        var assembler = new ChunkAssembler(1 << 20, _clock);
        var waiting = assembler.WaitAsync("a", _ => Task.CompletedTask, TimeSpan.FromMinutes(1), TestContext.Current.CancellationToken);

        assembler.AddJson("""{"app_name":"a","total_chunks":2,"data":"AA=="}"""u8).ShouldBe("chunk_idx is required");
        assembler.AddJson("""{"app_name":"a","chunk_idx":0,"total_chunks":2,"data":"AQI="}"""u8).ShouldBeNull();
        assembler.AddJson("""{"app_name":"a","chunk_idx":1,"total_chunks":2,"data":"AwQ="}"""u8).ShouldBeNull();

        (await waiting).Bytes.ShouldBe(new byte[] { 1, 2, 3, 4 });
        assembler.Rejected.ShouldBe(1);
    }

    /// <summary>The same for a binary chunk's header.</summary>
    [Fact]
    public async Task GivenABinaryChunkWhoseHeaderHasNoIndex_WhenTheRealChunksFollow_ThenItIsRejectedAndTheImageAssembles()
    {
        var assembler = new ChunkAssembler(1 << 20, _clock);
        var waiting = assembler.WaitAsync("b", _ => Task.CompletedTask, TimeSpan.FromMinutes(1), TestContext.Current.CancellationToken);

        assembler.AddBinary([.. """{"app_name":"b","total_chunks":2,"length":1}"""u8, BinaryChunkHeader.Separator, 0]).ShouldBe("chunk_idx is required");
        assembler.AddJson("""{"app_name":"b","chunk_idx":0,"total_chunks":2,"data":"AQI="}"""u8).ShouldBeNull();
        assembler.AddJson("""{"app_name":"b","chunk_idx":1,"total_chunks":2,"data":"AwQ="}"""u8).ShouldBeNull();

        (await waiting).Bytes.ShouldBe(new byte[] { 1, 2, 3, 4 });
        assembler.Rejected.ShouldBe(1);
    }

    private static ChunkMessage Chunk(string app, int index, int total, byte[] data) => new(app, index, total, Convert.ToBase64String(data));

    [Fact]
    public async Task GivenJsonAndBinaryChunksOfOneImage_WhenTheyArriveMixedOutOfOrderWithDuplicates_ThenTheyMakeOneVerifiedAssembly()
    {
        // An old proplet's JSON request and ours (binary) for one image at once: ours reads both topics.
        var assembler = new ChunkAssembler(1 << 20, _clock);
        byte[] image = [1, 2, 3, 4, 5, 6, 7];
        var sha = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(image));
        var waiting = assembler.WaitAsync("m", _ => Task.CompletedTask, TimeSpan.FromMinutes(1), TestContext.Current.CancellationToken);

        assembler.AddBinary(Binary("m", 2, 3, [7], sha, 7)).ShouldBeNull();
        assembler.AddBinary(Binary("m", 1, 3, [4, 5, 6], sha, 7)).ShouldBeNull();
        assembler.Add(Chunk("m", 1, 3, [9, 9, 9]) with { Sha256 = sha, Size = 7 }).ShouldBeNull(); // duplicate: the first copy wins
        assembler.Add(Chunk("m", 0, 3, [1, 2, 3]) with { Sha256 = sha, Size = 7 }).ShouldBeNull();

        var fetched = await waiting;
        fetched.Bytes.ShouldBe(image);
        fetched.Sha256.ShouldBe(sha);
        assembler.Rejected.ShouldBe(0);
    }

    [Fact]
    public void GivenACorruptedBinaryChunk_WhenItCompletesAnUnclaimedImage_ThenItFailsVerificationAndNothingIsKept()
    {
        var assembler = new ChunkAssembler(1 << 20, _clock, imageCacheBytes: 1 << 20);
        byte[] image = [1, 2, 3, 4, 5, 6];
        var sha = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(image));

        assembler.AddBinary(Binary("x", 1, 3, [3, 0xFF], sha, 6)).ShouldBeNull();
        assembler.AddBinary(Binary("x", 2, 3, [5, 6], sha, 6)).ShouldBeNull();
        var rejected = assembler.AddBinary(Binary("x", 0, 3, [1, 2], sha, 6));

        rejected.ShouldNotBeNull().ShouldStartWith($"image x failed verification: its chunks hash to sha256 {Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(new byte[] { 1, 2, 3, 0xFF, 5, 6 }))}");
        assembler.Rejected.ShouldBe(1);
        assembler.Count.ShouldBe(0);
        assembler.VerifiedBytes.ShouldBe(0);
    }

    /// <summary>Chunks decoded into place are hashed as they extend the run from chunk 0 (the digest is ready with the
    /// last chunk); whatever order they come in, the digest is the sha256 of the chunks in index order.</summary>
    [Theory]
    [InlineData(new[] { 0, 1, 2, 3, 4 }, false)]
    [InlineData(new[] { 3, 0, 4, 1, 2 }, false)]
    [InlineData(new[] { 0, 1, 2, 3, 4 }, true)]
    [InlineData(new[] { 4, 3, 2, 1, 0 }, true)]
    public void GivenBinaryChunksHashedAsTheyArrive_WhenTheImageCompletes_ThenItsDigestIsTheChunksInIndexOrder(int[] order, bool corruptChunk2)
    {
        var assembler = new ChunkAssembler(1 << 20, _clock, imageCacheBytes: 1 << 20);
        var image = Enumerable.Range(0, 4 * 1000 + 300).Select(i => (byte)(i * 7)).ToArray();
        var sha = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(image));
        string? last = null;
        foreach (var index in order)
        {
            var data = image.AsSpan(index * 1000, index == 4 ? 300 : 1000).ToArray();
            if (corruptChunk2 && index == 2)
            {
                data[500] ^= 0xFF;
            }

            last = assembler.AddBinary(Binary("h", index, 5, data, sha, image.Length));
        }

        if (corruptChunk2)
        {
            last.ShouldNotBeNull().ShouldStartWith("image h failed verification");
            assembler.VerifiedBytes.ShouldBe(0);
        }
        else
        {
            last.ShouldBeNull();
            assembler.VerifiedBytes.ShouldBe(image.Length);
        }
    }

    [Theory]
    [InlineData("no header line", "the binary chunk has no header line")]
    [InlineData("{\"app_name\":\"a\",\"chunk_idx\":0\n", "the binary chunk's header is not valid JSON")]
    [InlineData("[1,2]\nxy", "the binary chunk's header is not valid JSON")]
    [InlineData("null\n", "the binary chunk's header is null")]
    [InlineData("{\"app_name\":\"a\",\"chunk_idx\":0,\"total_chunks\":1,\"length\":5}\nabc", "the binary chunk carries 3 bytes, its header says 5")]
    [InlineData("{\"app_name\":\"a\",\"chunk_idx\":0,\"total_chunks\":1,\"length\":1}\nabc", "the binary chunk carries 3 bytes, its header says 1")]
    [InlineData("{\"chunk_idx\":0,\"total_chunks\":1,\"length\":1}\nx", "app_name is required")]
    [InlineData("{\"app_name\":\"a\",\"chunk_idx\":4,\"total_chunks\":2,\"length\":1}\nx", "chunk_idx 4 is out of range 0..1")]
    public void GivenAMalformedBinaryChunk_WhenAdded_ThenItIsRejectedWithTheReasonAndCounted(string payload, string reason)
    {
        var assembler = new ChunkAssembler(1 << 20, _clock);

        assembler.AddBinary(Encoding.UTF8.GetBytes(payload)).ShouldNotBeNull().ShouldStartWith(reason);

        assembler.Rejected.ShouldBe(1);
        assembler.Count.ShouldBe(0);
    }

    private static byte[] Binary(string app, int index, int total, byte[] data, string sha256, long size) =>
        [.. JsonSerializer.SerializeToUtf8Bytes(new BinaryChunkHeader(app, index, total, data.Length) { Sha256 = sha256, Size = size }), BinaryChunkHeader.Separator, .. data];
}
