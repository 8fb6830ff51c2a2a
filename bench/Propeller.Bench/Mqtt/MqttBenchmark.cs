using System.Diagnostics;
using System.Globalization;
using System.Text;
using MQTTnet.Protocol;
using Propeller.Broker;

namespace Propeller.Bench;

/// <summary>
/// `mqtt`: N messages through mosquitto from one publisher to one subscriber, per QoS: the product's connection layer
/// over MQTTnet (Propeller.Broker) against mosquitto's own C clients in the same run (`mosquitto_sub -C N` fed by
/// `mosquitto_pub -l`). Beside each rate: CPU seconds per 100k messages
/// (publisher + subscriber; ours in this process, mosquitto's clients through bash's `times`).
/// Options: --broker tcp://host:port (default PROPELLER_TEST_MQTT, else tcp://127.0.0.1:51883), --messages N (qos0),
/// --acked-messages N (qos1/qos2), --reference-acked-messages N (mosquitto_pub waits for every ack, so fewer suffice),
/// --payload BYTES, --rounds N (interleaved rounds, best of each; default 3), --inflight N (our in-flight window, default 10 like the original), --case qos0|qos1|qos2 (default all),
/// --mixed (also each side of the layer alone against mosquitto's other client: which side costs what).
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
            var mixed = args.Contains("--mixed");
            var options = new BrokerOptions { MaxInflight = inflight }.WithAddress(broker);

            Console.WriteLine($"# mqtt broker={options.Host}:{options.Port} payload={payloadSize}B messages(qos0)={messages} messages(qos1/2)={acked} reference(qos1/2)={referenceAcked} inflight={inflight} rounds={rounds} (best of)");

            foreach (var qos in new[] { MqttQualityOfServiceLevel.AtMostOnce, MqttQualityOfServiceLevel.AtLeastOnce, MqttQualityOfServiceLevel.ExactlyOnce })
            {
                if (only is not null && only != $"qos{(int)qos}")
                {
                    continue;
                }

                var ours = qos == MqttQualityOfServiceLevel.AtMostOnce ? messages : acked;
                var theirs = qos == MqttQualityOfServiceLevel.AtMostOnce ? messages : referenceAcked;
                // Warm-up (JIT, broker caches), not measured.
                await MeasureLayerAsync(options, qos, Math.Min(ours, 5000), payloadSize, cancellationToken);
                (double Rate, double Cpu) layer = default, reference = default;
                for (var round = 0; round < rounds; round++)
                {
                    // Interleaved rounds, best of each: on a shared machine the best round is the one least disturbed by
                    // other processes, for all clients alike.
                    layer = Best(layer, await MeasureLayerAsync(options, qos, ours, payloadSize, cancellationToken));
                    reference = Best(reference, await MeasureReferenceAsync(options, qos, theirs, payloadSize, cancellationToken));
                }

                Console.WriteLine(string.Create(
                    CultureInfo.InvariantCulture,
                    $"mqtt case=qos{(int)qos} msgs_per_s={layer.Rate:F0} reference_msgs_per_s={reference.Rate:F0} ratio={layer.Rate / reference.Rate:F2} cpu_s_per_100k={layer.Cpu:F2} reference_cpu_s_per_100k={reference.Cpu:F2}"));
                if (mixed)
                {
                    // Which side of the layer costs what: ours publishing to mosquitto_sub, mosquitto_pub to ours.
                    (double Rate, double Cpu) ourPublisher = default, ourSubscriber = default;
                    for (var round = 0; round < rounds; round++)
                    {
                        ourPublisher = Best(ourPublisher, await MeasureMixedAsync(options, qos, theirs, payloadSize, layerPublishes: true, cancellationToken));
                        ourSubscriber = Best(ourSubscriber, await MeasureMixedAsync(options, qos, theirs, payloadSize, layerPublishes: false, cancellationToken));
                    }

                    Console.WriteLine(string.Create(
                        CultureInfo.InvariantCulture,
                        $"mqtt case=qos{(int)qos}-mixed layer_pub_msgs_per_s={ourPublisher.Rate:F0} ratio={ourPublisher.Rate / reference.Rate:F2} cpu_s_per_100k={ourPublisher.Cpu:F2} layer_sub_msgs_per_s={ourSubscriber.Rate:F0} ratio={ourSubscriber.Rate / reference.Rate:F2} cpu_s_per_100k={ourSubscriber.Cpu:F2}"));
                }
            }

            return 0;
        }

        private static (double Rate, double Cpu) Best((double Rate, double Cpu) best, (double Rate, double Cpu) round) => round.Rate > best.Rate ? round : best;

        /// <summary>The product's connection layer over MQTTnet, pipelined the way the outbox hands messages over.</summary>
        private static async Task<(double Rate, double Cpu)> MeasureLayerAsync(
            BrokerOptions template,
            MqttQualityOfServiceLevel qos,
            int count,
            int payloadSize,
            CancellationToken cancellationToken)
        {
            var topic = $"propeller-bench/layer/{Guid.NewGuid():N}";
            var level = qos;
            var all = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            await using var subscriber = CountingSubscriber(ClientOptions(template, "bench-sub"), count, all);
            await using var publisher = new BrokerConnection(ClientOptions(template, "bench-pub"));
            await subscriber.StartAsync(cancellationToken);
            await publisher.StartAsync(cancellationToken);
            await subscriber.SubscribeAsync(topic, level, cancellationToken);
            var payload = Payload(payloadSize);

            var cpu = Process.GetCurrentProcess().TotalProcessorTime;
            var stopwatch = Stopwatch.StartNew();
            await PublishAllAsync(publisher, topic, payload, level, count, cancellationToken);
            await all.Task.WaitAsync(TimeSpan.FromSeconds(120), cancellationToken);
            var elapsed = stopwatch.Elapsed;
            return (count / elapsed.TotalSeconds, PerHundredThousand(Process.GetCurrentProcess().TotalProcessorTime - cpu, count));
        }

        /// <summary>The layer on one side, mosquitto's C client on the other (--mixed): which side of the layer costs what.</summary>
        private static async Task<(double Rate, double Cpu)> MeasureMixedAsync(
            BrokerOptions template,
            MqttQualityOfServiceLevel qos,
            int count,
            int payloadSize,
            bool layerPublishes,
            CancellationToken cancellationToken)
        {
            var topic = $"propeller-bench/mixed/{Guid.NewGuid():N}";
            var common = MosquittoArgs(template, topic, qos);
            var options = ClientOptions(template, "bench-mixed");
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(TimeSpan.FromSeconds(120));
            if (layerPublishes)
            {
                using var subscriber = MosquittoSub(common, count);
                var subscriberTimes = subscriber.StandardOutput.ReadToEndAsync(cancellationToken);
                await using var publisher = new BrokerConnection(options);
                await publisher.StartAsync(cancellationToken);
                await Task.Delay(500, cancellationToken);
                var payload = Payload(payloadSize);
                var cpu = Process.GetCurrentProcess().TotalProcessorTime;
                var stopwatch = Stopwatch.StartNew();
                await PublishAllAsync(publisher, topic, payload, qos, count, cancellationToken);
                await subscriber.WaitForExitAsync(timeout.Token);
                var elapsed = stopwatch.Elapsed;
                var ours = Process.GetCurrentProcess().TotalProcessorTime - cpu;
                return (count / elapsed.TotalSeconds, PerHundredThousand(ours + ChildCpu(await subscriberTimes), count));
            }
            else
            {
                var all = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                await using var subscriber = CountingSubscriber(options, count, all);
                await subscriber.StartAsync(cancellationToken);
                await subscriber.SubscribeAsync(topic, qos, cancellationToken);
                var input = Lines(count, payloadSize);

                var cpu = Process.GetCurrentProcess().TotalProcessorTime;
                var stopwatch = Stopwatch.StartNew();
                using var publisher = MosquittoPub(common);
                var publisherTimes = publisher.StandardOutput.ReadToEndAsync(cancellationToken);
                await publisher.StandardInput.WriteAsync(input, cancellationToken);
                publisher.StandardInput.Close();
                await all.Task.WaitAsync(timeout.Token);
                var elapsed = stopwatch.Elapsed;
                var ours = Process.GetCurrentProcess().TotalProcessorTime - cpu;
                await publisher.WaitForExitAsync(timeout.Token);
                return (count / elapsed.TotalSeconds, PerHundredThousand(ours + ChildCpu(await publisherTimes), count));
            }
        }

        /// <summary>One of the benchmark's clients: the broker of <paramref name="template"/>, its window, a fresh client id.</summary>
        private static BrokerOptions ClientOptions(BrokerOptions template, string prefix) =>
            new() { Host = template.Host, Port = template.Port, ClientId = $"{prefix}-{Guid.NewGuid():N}", MaxInflight = template.MaxInflight, ReceiveQueueCapacity = 4096 };

        private static byte[] Payload(int size)
        {
            var payload = new byte[size];
            Array.Fill(payload, (byte)'x');
            return payload;
        }

        /// <summary>Publishes <paramref name="count"/> messages with up to 64 outstanding, the way the outbox hands them over.</summary>
        private static async Task PublishAllAsync(BrokerConnection publisher, string topic, byte[] payload, MqttQualityOfServiceLevel qos, int count, CancellationToken cancellationToken)
        {
            var outstanding = new Queue<Task>();
            for (var i = 0; i < count; i++)
            {
                outstanding.Enqueue(publisher.PublishAsync(topic, payload, qos, retain: false, orderKey: null, cancellationToken));
                while (outstanding.Count > 64 || (outstanding.Count > 0 && outstanding.Peek().IsCompleted))
                {
                    await outstanding.Dequeue();
                }
            }

            await Task.WhenAll(outstanding);
        }

        /// <summary>A connection whose handler completes <paramref name="all"/> at the <paramref name="count"/>th message.</summary>
        private static BrokerConnection CountingSubscriber(BrokerOptions options, int count, TaskCompletionSource all)
        {
            var received = 0;
            return new BrokerConnection(options)
            {
                Handler = (messages, _) =>
                {
                    if ((received += messages.Count) >= count)
                    {
                        all.TrySetResult();
                    }

                    return ValueTask.CompletedTask;
                },
            };
        }

        /// <summary>mosquitto_pub -l's input: one payload per line.</summary>
        private static StringBuilder Lines(int count, int payloadSize)
        {
            var line = new string('x', payloadSize);
            var input = new StringBuilder(count * (payloadSize + 1));
            for (var i = 0; i < count; i++)
            {
                input.Append(line).Append('\n');
            }

            return input;
        }

        private static double PerHundredThousand(TimeSpan cpu, int count) => cpu.TotalSeconds * 100_000 / count;

        private static async Task<(double Rate, double Cpu)> MeasureReferenceAsync(
            BrokerOptions template,
            MqttQualityOfServiceLevel qos,
            int count,
            int payloadSize,
            CancellationToken cancellationToken)
        {
            var topic = $"propeller-bench/reference/{Guid.NewGuid():N}";
            var common = MosquittoArgs(template, topic, qos);
            using var subscriber = MosquittoSub(common, count);
            var subscriberTimes = subscriber.StandardOutput.ReadToEndAsync(cancellationToken);
            // mosquitto_sub has no readiness signal; give it time to connect and subscribe before publishing.
            await Task.Delay(500, cancellationToken);

            var input = Lines(count, payloadSize);

            var stopwatch = Stopwatch.StartNew();
            using var publisher = MosquittoPub(common);
            var publisherTimes = publisher.StandardOutput.ReadToEndAsync(cancellationToken);
            await publisher.StandardInput.WriteAsync(input, cancellationToken);
            publisher.StandardInput.Close();
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(TimeSpan.FromSeconds(120));
            await subscriber.WaitForExitAsync(timeout.Token);
            var elapsed = stopwatch.Elapsed;
            await publisher.WaitForExitAsync(timeout.Token);
            var cpu = ChildCpu(await subscriberTimes) + ChildCpu(await publisherTimes);
            return (count / elapsed.TotalSeconds, PerHundredThousand(cpu, count));
        }

        /// <summary>mosquitto's client arguments for <paramref name="topic"/> at <paramref name="qos"/> on the broker of <paramref name="template"/>.</summary>
        private static string[] MosquittoArgs(BrokerOptions template, string topic, MqttQualityOfServiceLevel qos) =>
            ["-h", template.Host, "-p", template.Port.ToString(CultureInfo.InvariantCulture), "-t", topic, "-q", ((int)qos).ToString(CultureInfo.InvariantCulture)];

        /// <summary>
        /// mosquitto_sub until <paramref name="count"/> messages, through bash, whose `times` prints the CPU time of the
        /// client it ran (its only output: the messages go to /dev/null).
        /// </summary>
        private static Process MosquittoSub(string[] common, int count) =>
            Start("bash", ["-c", Shell("mosquitto_sub", [.. common, "-C", count.ToString(CultureInfo.InvariantCulture)]) + " > /dev/null; times"], redirectInput: false);

        /// <summary>mosquitto_pub -l (one message per line of its input), through bash, then bash's `times`.</summary>
        private static Process MosquittoPub(string[] common) =>
            Start("bash", ["-c", Shell("mosquitto_pub", [.. common, "-l"]) + "; times"], redirectInput: true);

        private static string Shell(string file, string[] arguments) => string.Join(' ', [file, .. arguments.Select(a => "'" + a + "'")]);

        /// <summary>The children's user + system time from bash's `times` (second line: "0m0.210s 0m0.150s").</summary>
        private static TimeSpan ChildCpu(string times)
        {
            var lines = times.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            var total = TimeSpan.Zero;
            foreach (var part in lines[^1].Split(' ', StringSplitOptions.RemoveEmptyEntries))
            {
                var m = part.IndexOf('m', StringComparison.Ordinal);
                total += TimeSpan.FromMinutes(int.Parse(part[..m], CultureInfo.InvariantCulture))
                    + TimeSpan.FromSeconds(double.Parse(part[(m + 1)..^1], CultureInfo.InvariantCulture));
            }

            return total;
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

        private static string? Option(string[] args, string name)
        {
            var index = Array.IndexOf(args, name);
            return index >= 0 && index + 1 < args.Length ? args[index + 1] : null;
        }
    }
}
