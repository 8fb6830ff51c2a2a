using System.Diagnostics;
using System.Globalization;
using System.Text;
using Propeller.Mqtt;

namespace Propeller.Bench;

/// <summary>
/// `mqtt`: N messages through mosquitto from one Propeller.Mqtt publisher to one Propeller.Mqtt subscriber, per QoS,
/// against mosquitto's own C clients in the same run (`mosquitto_sub -C N` fed by `mosquitto_pub -l`).
/// Options: --broker tcp://host:port (default PROPELLER_TEST_MQTT, else tcp://127.0.0.1:51883), --messages N (qos0),
/// --acked-messages N (qos1/qos2), --reference-acked-messages N (mosquitto_pub waits for every ack, so fewer suffice),
/// --payload BYTES, --rounds N (interleaved rounds, best of each; default 3), --inflight N (our in-flight window, default 10 like the original), --case qos0|qos1|qos2 (default all).
/// </summary>
internal static partial class BenchmarkRegistry
{
    static partial void AddMqtt(IDictionary<string, Func<string[], CancellationToken, Task<int>>> benchmarks)
    {
        benchmarks["mqtt"] = MqttBenchmark.RunAsync;
    }

    private static class MqttBenchmark
    {
        public static async Task<int> RunAsync(string[] args, CancellationToken cancellationToken)
        {
            var broker = Option(args, "--broker")
                ?? (Environment.GetEnvironmentVariable("PROPELLER_TEST_MQTT") is { Length: > 0 } env ? env : "tcp://127.0.0.1:51883");
            var messages = int.Parse(Option(args, "--messages") ?? "200000", CultureInfo.InvariantCulture);
            var acked = int.Parse(Option(args, "--acked-messages") ?? "100000", CultureInfo.InvariantCulture);
            var referenceAcked = int.Parse(Option(args, "--reference-acked-messages") ?? "5000", CultureInfo.InvariantCulture);
            var payloadSize = int.Parse(Option(args, "--payload") ?? "32", CultureInfo.InvariantCulture);
            var inflight = int.Parse(Option(args, "--inflight") ?? "10", CultureInfo.InvariantCulture);
            var rounds = int.Parse(Option(args, "--rounds") ?? "3", CultureInfo.InvariantCulture);
            var only = Option(args, "--case");
            var options = new MqttClientOptions { MaxInflight = inflight }.WithAddress(broker);
            Console.WriteLine($"# mqtt broker={options.Host}:{options.Port} payload={payloadSize}B messages(qos0)={messages} messages(qos1/2)={acked} reference(qos1/2)={referenceAcked} inflight={inflight} rounds={rounds} (best of)");

            foreach (var qos in new[] { MqttQualityOfService.AtMostOnce, MqttQualityOfService.AtLeastOnce, MqttQualityOfService.ExactlyOnce })
            {
                if (only is not null && only != $"qos{(int)qos}")
                {
                    continue;
                }

                var ours = qos == MqttQualityOfService.AtMostOnce ? messages : acked;
                var theirs = qos == MqttQualityOfService.AtMostOnce ? messages : referenceAcked;
                // Warm-up (JIT, broker caches), not measured.
                await MeasureOursAsync(options, qos, Math.Min(ours, 5000), payloadSize, cancellationToken);
                double oursRate = 0, referenceRate = 0;
                for (var round = 0; round < rounds; round++)
                {
                    // Interleaved rounds, best of each: on a shared machine the best round is the one least disturbed by
                    // other processes, for both clients alike.
                    oursRate = Math.Max(oursRate, await MeasureOursAsync(options, qos, ours, payloadSize, cancellationToken));
                    referenceRate = Math.Max(referenceRate, await MeasureReferenceAsync(options, qos, theirs, payloadSize, cancellationToken));
                }

                Console.WriteLine(string.Create(
                    CultureInfo.InvariantCulture,
                    $"mqtt case=qos{(int)qos} msgs_per_s={oursRate:F0} reference_msgs_per_s={referenceRate:F0} ratio={oursRate / referenceRate:F2}"));
            }

            return 0;
        }

        private static async Task<double> MeasureOursAsync(
            MqttClientOptions template,
            MqttQualityOfService qos,
            int count,
            int payloadSize,
            CancellationToken cancellationToken)
        {
            var topic = $"propeller-bench/ours/{Guid.NewGuid():N}";
            await using var subscriber = new MqttClient(Clone(template, "bench-sub"));
            await using var publisher = new MqttClient(Clone(template, "bench-pub"));
            await subscriber.ConnectAsync(cancellationToken);
            await publisher.ConnectAsync(cancellationToken);
            await subscriber.SubscribeAsync(topic, qos, cancellationToken);
            var payload = new byte[payloadSize];
            Array.Fill(payload, (byte)'x');

            var stopwatch = Stopwatch.StartNew();
            var receive = Task.Run(
                async () =>
                {
                    var received = 0;
                    while (received < count && await subscriber.Messages.WaitToReadAsync(cancellationToken))
                    {
                        while (received < count && subscriber.Messages.TryRead(out _))
                        {
                            received++;
                        }
                    }
                },
                cancellationToken);

            // Keep more publishes outstanding than the in-flight window so the window, not this loop, is the limit.
            var outstanding = new Queue<Task>();
            for (var i = 0; i < count; i++)
            {
                outstanding.Enqueue(publisher.PublishAsync(topic, payload, qos, retain: false, cancellationToken));
                while (outstanding.Count > 64 || (outstanding.Count > 0 && outstanding.Peek().IsCompleted))
                {
                    await outstanding.Dequeue();
                }
            }

            await Task.WhenAll(outstanding);
            await receive.WaitAsync(TimeSpan.FromSeconds(120), cancellationToken);
            return count / stopwatch.Elapsed.TotalSeconds;
        }

        private static async Task<double> MeasureReferenceAsync(
            MqttClientOptions template,
            MqttQualityOfService qos,
            int count,
            int payloadSize,
            CancellationToken cancellationToken)
        {
            var topic = $"propeller-bench/reference/{Guid.NewGuid():N}";
            var common = new[] { "-h", template.Host, "-p", template.Port.ToString(CultureInfo.InvariantCulture), "-t", topic, "-q", ((int)qos).ToString(CultureInfo.InvariantCulture) };
            using var subscriber = Start("mosquitto_sub", [.. common, "-C", count.ToString(CultureInfo.InvariantCulture)], redirectInput: false);
            var drain = subscriber.StandardOutput.BaseStream.CopyToAsync(Stream.Null, cancellationToken);
            // mosquitto_sub has no readiness signal; give it time to connect and subscribe before publishing.
            await Task.Delay(500, cancellationToken);

            var line = new string('x', payloadSize);
            var input = new StringBuilder(count * (payloadSize + 1));
            for (var i = 0; i < count; i++)
            {
                input.Append(line).Append('\n');
            }

            var stopwatch = Stopwatch.StartNew();
            using var publisher = Start("mosquitto_pub", [.. common, "-l"], redirectInput: true);
            var drainPublisher = publisher.StandardOutput.BaseStream.CopyToAsync(Stream.Null, cancellationToken);
            await publisher.StandardInput.WriteAsync(input, cancellationToken);
            publisher.StandardInput.Close();
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(TimeSpan.FromSeconds(120));
            await subscriber.WaitForExitAsync(timeout.Token);
            var elapsed = stopwatch.Elapsed;
            await publisher.WaitForExitAsync(timeout.Token);
            await drain;
            await drainPublisher;
            return count / elapsed.TotalSeconds;
        }

        private static Process Start(string file, string[] arguments, bool redirectInput)
        {
            var info = new ProcessStartInfo(file, arguments)
            {
                RedirectStandardOutput = true,
                RedirectStandardInput = redirectInput,
                UseShellExecute = false,
            };
            return Process.Start(info) ?? throw new InvalidOperationException($"{file} did not start");
        }

        private static MqttClientOptions Clone(MqttClientOptions template, string prefix) => new()
        {
            Host = template.Host,
            Port = template.Port,
            ClientId = $"{prefix}-{Guid.NewGuid():N}",
            MaxInflight = template.MaxInflight,
            ReceiveQueueCapacity = 4096,
            SendQueueCapacity = 4096,
        };

        private static string? Option(string[] args, string name)
        {
            var index = Array.IndexOf(args, name);
            return index >= 0 && index + 1 < args.Length ? args[index + 1] : null;
        }
    }
}
