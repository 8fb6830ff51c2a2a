using System.Diagnostics;
using System.Globalization;
using System.Text;
using MQTTnet;
using MQTTnet.Protocol;
using Propeller.Bench.Support;
using Propeller.Broker;

namespace Propeller.Bench;

/// <summary>
/// `mqtt`: N messages through mosquitto from one publisher to one subscriber, per QoS: the product's connection layer
/// over MQTTnet (Propeller.Broker) against mosquitto's own C clients in the same run (`mosquitto_pub -l` publishing to
/// `mosquitto_sub -C N`). Every side is timed the same way, at its subscriber, from the first message received to the
/// last: rate = messages after the first arrival / (last arrival - first arrival). No client's start-up, connect or
/// subscribe is inside the clock (mosquitto_pub -l sleeps 100 ms while it connects, pub_stdin_line_loop in 2.0.11), only
/// the stream. mosquitto_sub stamps each message (-F %U: unix time with nanoseconds) into a file; ours stamps each batch
/// its handler receives. mosquitto_sub counts as subscribed once a retained marker on its topic has reached it (it has no
/// other readiness signal: -d prints every packet). Both publishers keep the same window of QoS 1/2 messages in flight
/// and queue the rest: ours --inflight, mosquitto_pub the same through -M (its own default is 20, client_shared.c).
/// Beside each rate: CPU seconds per 100k messages (publisher + subscriber; ours in this process, mosquitto's clients
/// through bash's `times`).
/// Options: --broker tcp://host:port (default PROPELLER_TEST_MQTT, else tcp://127.0.0.1:51883), --messages N (qos0, both
/// sides), --acked-messages N (qos1/qos2, ours; default 65,535), --reference-acked-messages N (qos1/qos2, mosquitto's;
/// default the same as --acked-messages, at most 65,535: mosquitto_pub -l numbers its QoS 1/2 messages with 16-bit
/// message ids and, once they wrap, takes the first ack of its last id for the end and disconnects; --acked-messages
/// above 65,535 therefore needs it given explicitly, so that runs of different lengths are compared only on purpose, and
/// each case line then names both counts), --payload BYTES,
/// --rounds N (interleaved rounds, best of each; default 3), --inflight N (our in-flight window, default 10 like the
/// original), --case qos0|qos1|qos2 (default all), --mixed (also each side of the layer alone against mosquitto's other
/// client: which side costs what), --raw (also MQTTnet alone, publisher and subscriber without our layer, the same window
/// and socket settings: what the layer itself adds), --lowlevel (also MQTTnet's low-level client on both sides, each
/// packet answered inline by one receive loop per client: what MQTTnet's own queues between the socket and the handler
/// cost).
/// </summary>
internal static partial class BenchmarkRegistry
{
    static partial void AddMqtt(IDictionary<string, Func<string[], CancellationToken, Task<int>>> benchmarks)
    {
        benchmarks["mqtt"] = MqttBenchmark.RunAsync;
    }

    private static class MqttBenchmark
    {
        /// <summary>
        /// The most QoS 1/2 messages one mosquitto_pub -l sends: past 65,535 its message ids wrap, and the first ack of
        /// its last message's id (an earlier message's) ends it (pub_client.c, 2.0.11: 70,000 lines delivered 4,480).
        /// </summary>
        private const int MosquittoPubMaxAcked = 65_535;

        /// <summary>The fewest messages a case sends: a rate is timed from the first batch received to the last, and one
        /// batch holds up to 256 (fewer messages could all come in the first, leaving no time to divide by).</summary>
        private const int MinMessages = 1_000;

        private static readonly TimeSpan Limit = TimeSpan.FromSeconds(120);

        private static readonly string[] Cases = ["qos0", "qos1", "qos2"];

        public static async Task<int> RunAsync(string[] args, CancellationToken cancellationToken)
        {
            BenchArgs.Known(
                args,
                ["--broker", "--messages", "--acked-messages", "--reference-acked-messages", "--payload", "--inflight", "--rounds", "--case"],
                ["--mixed", "--raw", "--lowlevel"]);
            var broker = BenchArgs.Value(args, "--broker")
                ?? (Environment.GetEnvironmentVariable("PROPELLER_TEST_MQTT") is { Length: > 0 } env ? env : "tcp://127.0.0.1:51883");
            // At least 2: a rate needs a first and a last arrival.
            var messages = BenchArgs.Int(args, "--messages", 200_000, min: MinMessages);
            var acked = BenchArgs.Int(args, "--acked-messages", MosquittoPubMaxAcked, min: MinMessages);
            if (acked > MosquittoPubMaxAcked && BenchArgs.Value(args, "--reference-acked-messages") is null)
            {
                // Capping the reference silently would compare runs of different lengths under one ratio.
                throw new BenchUsageException($"--acked-messages {acked}: mosquitto_pub sends at most {MosquittoPubMaxAcked}; give --reference-acked-messages (at most {MosquittoPubMaxAcked}) to compare runs of different lengths");
            }

            var referenceAcked = BenchArgs.Int(args, "--reference-acked-messages", acked, min: MinMessages);
            if (referenceAcked > MosquittoPubMaxAcked)
            {
                throw new BenchUsageException($"--reference-acked-messages {referenceAcked}: at most {MosquittoPubMaxAcked} (mosquitto_pub -l stops early once its 16-bit message ids wrap)");
            }

            var payloadSize = BenchArgs.Int(args, "--payload", 32);
            var inflight = BenchArgs.Int(args, "--inflight", 10);
            var rounds = BenchArgs.Int(args, "--rounds", 3);
            var only = BenchArgs.Value(args, "--case");
            if (only is not null && !Cases.Contains(only, StringComparer.Ordinal))
            {
                throw new BenchUsageException($"--case {only}: one of {string.Join(", ", Cases)}");
            }

            var mixed = args.Contains("--mixed");
            var raw = args.Contains("--raw");
            var lowLevel = args.Contains("--lowlevel");
            var options = new BrokerOptions { MaxInflight = inflight }.WithAddress(broker);

            Console.WriteLine($"# mqtt broker={options.Host}:{options.Port} payload={payloadSize}B messages(qos0)={messages} messages(qos1/2)={acked} reference(qos1/2)={referenceAcked} inflight={inflight} rounds={rounds} (best of; rates first to last arrival at the subscriber)");

            foreach (var qos in new[] { MqttQualityOfServiceLevel.AtMostOnce, MqttQualityOfServiceLevel.AtLeastOnce, MqttQualityOfServiceLevel.ExactlyOnce })
            {
                if (only is not null && only != $"qos{(int)qos}")
                {
                    continue;
                }

                var ours = qos == MqttQualityOfServiceLevel.AtMostOnce ? messages : acked;
                var theirs = qos == MqttQualityOfServiceLevel.AtMostOnce ? messages : referenceAcked;
                // Warm-up (JIT, broker caches), not measured: every client of this process that is measured below, so no
                // first round pays for JIT alone (mosquitto's C clients have none).
                var warmUp = Math.Min(ours, 5000);
                await MeasureLayerAsync(options, qos, warmUp, payloadSize, cancellationToken);
                if (raw)
                {
                    await MeasureRawAsync(options, qos, warmUp, payloadSize, cancellationToken);
                }

                if (lowLevel)
                {
                    await MeasureLowLevelAsync(options, qos, warmUp, payloadSize, cancellationToken);
                }

                // Rates are per second, so the counts may differ (--reference-acked-messages); the line says so when they do.
                var counts = ours == theirs ? "" : FormattableString.Invariant($" messages={ours} reference_messages={theirs}");
                (double Rate, double Cpu) layer = default, reference = default, alone = default, low = default;
                for (var round = 0; round < rounds; round++)
                {
                    // Interleaved rounds, best of each: on a shared machine the best round is the one least disturbed by
                    // other processes, for all clients alike.
                    layer = Best(layer, await MeasureLayerAsync(options, qos, ours, payloadSize, cancellationToken));
                    reference = Best(reference, await MeasureReferenceAsync(options, qos, theirs, payloadSize, cancellationToken));
                    if (raw)
                    {
                        alone = Best(alone, await MeasureRawAsync(options, qos, ours, payloadSize, cancellationToken));
                    }

                    if (lowLevel)
                    {
                        low = Best(low, await MeasureLowLevelAsync(options, qos, ours, payloadSize, cancellationToken));
                    }
                }

                Console.WriteLine(string.Create(
                    CultureInfo.InvariantCulture,
                    $"mqtt case=qos{(int)qos} msgs_per_s={layer.Rate:F0} reference_msgs_per_s={reference.Rate:F0} ratio={layer.Rate / reference.Rate:F2} cpu_s_per_100k={layer.Cpu:F2} reference_cpu_s_per_100k={reference.Cpu:F2}{counts}"));
                if (raw)
                {
                    Console.WriteLine(string.Create(
                        CultureInfo.InvariantCulture,
                        $"mqtt case=qos{(int)qos}-raw mqttnet_msgs_per_s={alone.Rate:F0} ratio={alone.Rate / reference.Rate:F2} layer_over_mqttnet={layer.Rate / alone.Rate:F2} cpu_s_per_100k={alone.Cpu:F2}"));
                }

                if (lowLevel)
                {
                    Console.WriteLine(string.Create(
                        CultureInfo.InvariantCulture,
                        $"mqtt case=qos{(int)qos}-lowlevel msgs_per_s={low.Rate:F0} ratio={low.Rate / reference.Rate:F2} layer_over_lowlevel={layer.Rate / low.Rate:F2} cpu_s_per_100k={low.Cpu:F2}"));
                }

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
            var arrivals = new Arrivals(count);
            await using var subscriber = CountingSubscriber(ClientOptions(template, "bench-sub"), arrivals);
            await using var publisher = new BrokerConnection(ClientOptions(template, "bench-pub"));
            await subscriber.StartAsync(cancellationToken);
            await publisher.StartAsync(cancellationToken);
            await subscriber.SubscribeAsync(topic, qos, cancellationToken);
            var payload = Payload(payloadSize);

            var cpu = Process.GetCurrentProcess().TotalProcessorTime;
            await PublishAllAsync(publisher, topic, payload, qos, count, cancellationToken);
            await arrivals.WaitAsync(Limit, cancellationToken);
            return (arrivals.Rate, PerHundredThousand(Process.GetCurrentProcess().TotalProcessorTime - cpu, count));
        }

        /// <summary>
        /// MQTTnet alone (--raw): a publisher keeping <see cref="BrokerOptions.MaxInflight"/> QoS 1/2 publishes in flight
        /// (a semaphore released as each completes), a subscriber whose handler counts (MQTTnet acknowledges when it
        /// returns), both with the layer's client options (one write per packet, the same socket buffers).
        /// </summary>
        private static async Task<(double Rate, double Cpu)> MeasureRawAsync(
            BrokerOptions template,
            MqttQualityOfServiceLevel qos,
            int count,
            int payloadSize,
            CancellationToken cancellationToken)
        {
            var topic = $"propeller-bench/raw/{Guid.NewGuid():N}";
            var arrivals = new Arrivals(count);
            var factory = new MqttClientFactory();
            using var subscriber = factory.CreateMqttClient();
            using var publisher = factory.CreateMqttClient();
            subscriber.ApplicationMessageReceivedAsync += _ =>
            {
                arrivals.Add(1);
                return Task.CompletedTask;
            };
            await subscriber.ConnectAsync(BrokerConnection.BuildClientOptions(ClientOptions(template, "bench-raw-sub")), cancellationToken);
            await publisher.ConnectAsync(BrokerConnection.BuildClientOptions(ClientOptions(template, "bench-raw-pub")), cancellationToken);
            await subscriber.SubscribeAsync(topic, qos, cancellationToken);
            var message = new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload(Payload(payloadSize)).WithQualityOfServiceLevel(qos).Build();
            using var window = new SemaphoreSlim(template.MaxInflight);

            var cpu = Process.GetCurrentProcess().TotalProcessorTime;
            var published = new List<Task>(count);
            for (var i = 0; i < count; i++)
            {
                if (qos != MqttQualityOfServiceLevel.AtMostOnce)
                {
                    await window.WaitAsync(cancellationToken);
                }

                published.Add(PublishReleasingAsync(publisher, message, qos == MqttQualityOfServiceLevel.AtMostOnce ? null : window, cancellationToken));
            }

            await Task.WhenAll(published);
            await arrivals.WaitAsync(Limit, cancellationToken);
            return (arrivals.Rate, PerHundredThousand(Process.GetCurrentProcess().TotalProcessorTime - cpu, count));
        }

        /// <summary>
        /// MQTTnet's low-level client on both sides (--lowlevel): packets sent and received by our own loops, one receive
        /// loop per client that answers each packet inline (PUBACK, PUBREC/PUBREL/PUBCOMP), no MQTTnet receive or
        /// publish-processing queue between the socket and the handler. The publisher keeps the same window.
        /// </summary>
        private static async Task<(double Rate, double Cpu)> MeasureLowLevelAsync(
            BrokerOptions template,
            MqttQualityOfServiceLevel qos,
            int count,
            int payloadSize,
            CancellationToken cancellationToken)
        {
            var topic = $"propeller-bench/lowlevel/{Guid.NewGuid():N}";
            var arrivals = new Arrivals(count);
            var factory = new MqttClientFactory();
            using var subscriber = factory.CreateLowLevelMqttClient();
            using var publisher = factory.CreateLowLevelMqttClient();
            await LowLevelConnectAsync(subscriber, template, "bench-low-sub", cancellationToken);
            await LowLevelConnectAsync(publisher, template, "bench-low-pub", cancellationToken);
            await subscriber.SendAsync(
                new MQTTnet.Packets.MqttSubscribePacket { PacketIdentifier = 1, TopicFilters = { new MQTTnet.Packets.MqttTopicFilter { Topic = topic, QualityOfServiceLevel = qos } } },
                cancellationToken);
            if (await subscriber.ReceiveAsync(cancellationToken) is not MQTTnet.Packets.MqttSubAckPacket)
            {
                throw new BenchFailedException("low-level subscriber: no SUBACK");
            }

            using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            var receiving = Task.Run(async () =>
            {
                while (!stop.IsCancellationRequested)
                {
                    switch (await subscriber.ReceiveAsync(stop.Token))
                    {
                        case MQTTnet.Packets.MqttPublishPacket publish:
                            arrivals.Add(1);
                            if (publish.QualityOfServiceLevel == MqttQualityOfServiceLevel.AtLeastOnce)
                            {
                                await subscriber.SendAsync(new MQTTnet.Packets.MqttPubAckPacket { PacketIdentifier = publish.PacketIdentifier }, stop.Token);
                            }
                            else if (publish.QualityOfServiceLevel == MqttQualityOfServiceLevel.ExactlyOnce)
                            {
                                await subscriber.SendAsync(new MQTTnet.Packets.MqttPubRecPacket { PacketIdentifier = publish.PacketIdentifier }, stop.Token);
                            }

                            break;
                        case MQTTnet.Packets.MqttPubRelPacket release:
                            await subscriber.SendAsync(new MQTTnet.Packets.MqttPubCompPacket { PacketIdentifier = release.PacketIdentifier }, stop.Token);
                            break;
                    }
                }
            }, CancellationToken.None);

            using var window = new SemaphoreSlim(template.MaxInflight);
            var acknowledging = qos == MqttQualityOfServiceLevel.AtMostOnce ? Task.CompletedTask : Task.Run(async () =>
            {
                while (!stop.IsCancellationRequested)
                {
                    switch (await publisher.ReceiveAsync(stop.Token))
                    {
                        case MQTTnet.Packets.MqttPubAckPacket:
                        case MQTTnet.Packets.MqttPubCompPacket:
                            window.Release();
                            break;
                        case MQTTnet.Packets.MqttPubRecPacket received:
                            await publisher.SendAsync(new MQTTnet.Packets.MqttPubRelPacket { PacketIdentifier = received.PacketIdentifier }, stop.Token);
                            break;
                    }
                }
            }, CancellationToken.None);

            var payload = Payload(payloadSize);
            var cpu = Process.GetCurrentProcess().TotalProcessorTime;
            ushort id = 0;
            for (var i = 0; i < count; i++)
            {
                var packet = new MQTTnet.Packets.MqttPublishPacket { Topic = topic, PayloadSegment = payload, QualityOfServiceLevel = qos };
                if (qos != MqttQualityOfServiceLevel.AtMostOnce)
                {
                    await window.WaitAsync(cancellationToken);
                    packet.PacketIdentifier = id = id == ushort.MaxValue ? (ushort)1 : (ushort)(id + 1);
                }

                await publisher.SendAsync(packet, cancellationToken);
            }

            await arrivals.WaitAsync(Limit, cancellationToken);
            var spent = Process.GetCurrentProcess().TotalProcessorTime - cpu;
            await stop.CancelAsync();
            try
            {
                await Task.WhenAll(receiving, acknowledging);
            }
            catch (Exception) when (stop.IsCancellationRequested)
            {
                // The loops end with the cancellation (or the disposed adapter).
            }

            return (arrivals.Rate, PerHundredThousand(spent, count));
        }

        private static async Task LowLevelConnectAsync(MQTTnet.LowLevelClient.ILowLevelMqttClient client, BrokerOptions template, string prefix, CancellationToken cancellationToken)
        {
            var options = ClientOptions(template, prefix);
            await client.ConnectAsync(BrokerConnection.BuildClientOptions(options), cancellationToken);
            await client.SendAsync(new MQTTnet.Packets.MqttConnectPacket { ClientId = options.ClientId, CleanSession = true, KeepAlivePeriod = 60, ReceiveMaximum = 65535 }, cancellationToken);
            if (await client.ReceiveAsync(cancellationToken) is not MQTTnet.Packets.MqttConnAckPacket connAck || connAck.ReasonCode != MqttConnectReasonCode.Success)
            {
                throw new BenchFailedException("low-level client: connection refused");
            }
        }

        private static async Task PublishReleasingAsync(IMqttClient client, MqttApplicationMessage message, SemaphoreSlim? window, CancellationToken cancellationToken)
        {
            try
            {
                var result = await client.PublishAsync(message, cancellationToken);
                if (!result.IsSuccess)
                {
                    throw new BenchFailedException($"MQTTnet's publish on {message.Topic} was refused: {result.ReasonCode}");
                }
            }
            finally
            {
                window?.Release();
            }
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
            if (layerPublishes)
            {
                await using var publisher = new BrokerConnection(options);
                await publisher.StartAsync(cancellationToken);
                await using var subscriber = await StampingSubscriber.StartAsync(publisher, common, topic, count, cancellationToken);
                var payload = Payload(payloadSize);
                var cpu = Process.GetCurrentProcess().TotalProcessorTime;
                await PublishAllAsync(publisher, topic, payload, qos, count, cancellationToken);
                var (rate, subscriberCpu) = await subscriber.FinishAsync(Limit, cancellationToken);
                var ours = Process.GetCurrentProcess().TotalProcessorTime - cpu;
                return (rate, PerHundredThousand(ours + subscriberCpu, count));
            }
            else
            {
                var arrivals = new Arrivals(count);
                await using var subscriber = CountingSubscriber(options, arrivals);
                await subscriber.StartAsync(cancellationToken);
                await subscriber.SubscribeAsync(topic, qos, cancellationToken);
                var input = Lines(count, payloadSize);

                var cpu = Process.GetCurrentProcess().TotalProcessorTime;
                Process? publisher = null;
                try
                {
                    publisher = MosquittoPub(common, template.MaxInflight);
                    var publisherTimes = publisher.StandardOutput.ReadToEndAsync(cancellationToken);
                    await publisher.StandardInput.WriteAsync(input, cancellationToken);
                    publisher.StandardInput.Close();
                    await arrivals.WaitAsync(Limit, cancellationToken);
                    var ours = Process.GetCurrentProcess().TotalProcessorTime - cpu;
                    await ExitedAsync(publisher, "mosquitto_pub", cancellationToken);
                    return (arrivals.Rate, PerHundredThousand(ours + ChildCpu(await publisherTimes), count));
                }
                finally
                {
                    ChildProcess.Stop(publisher);
                }
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

        /// <summary>A connection whose handler stamps each batch it receives into <paramref name="arrivals"/>.</summary>
        private static BrokerConnection CountingSubscriber(BrokerOptions options, Arrivals arrivals) =>
            new(options)
            {
                Handler = (messages, _) =>
                {
                    arrivals.Add(messages.Count);
                    return ValueTask.CompletedTask;
                },
            };

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
            await using var marker = new BrokerConnection(ClientOptions(template, "bench-marker"));
            await marker.StartAsync(cancellationToken);
            await using var subscriber = await StampingSubscriber.StartAsync(marker, common, topic, count, cancellationToken);
            var input = Lines(count, payloadSize);
            Process? publisher = null;
            try
            {
                publisher = MosquittoPub(common, template.MaxInflight);
                var publisherTimes = publisher.StandardOutput.ReadToEndAsync(cancellationToken);
                await publisher.StandardInput.WriteAsync(input, cancellationToken);
                publisher.StandardInput.Close();
                var (rate, subscriberCpu) = await subscriber.FinishAsync(Limit, cancellationToken);
                await ExitedAsync(publisher, "mosquitto_pub", cancellationToken);
                return (rate, PerHundredThousand(subscriberCpu + ChildCpu(await publisherTimes), count));
            }
            finally
            {
                ChildProcess.Stop(publisher);
            }
        }

        /// <summary>mosquitto's client arguments for <paramref name="topic"/> at <paramref name="qos"/> on the broker of <paramref name="template"/>.</summary>
        private static string[] MosquittoArgs(BrokerOptions template, string topic, MqttQualityOfServiceLevel qos) =>
            ["-h", template.Host, "-p", template.Port.ToString(CultureInfo.InvariantCulture), "-t", topic, "-q", ((int)qos).ToString(CultureInfo.InvariantCulture)];

        /// <summary>mosquitto_pub -l (one message per line of its input) with our window (-M: its default is 20), through
        /// bash, then bash's `times`.</summary>
        private static Process MosquittoPub(string[] common, int inflight) =>
            Start("bash", ["-c", Shell("mosquitto_pub", [.. common, "-l", "-M", inflight.ToString(CultureInfo.InvariantCulture)]) + "; times"], redirectInput: true);

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

        /// <summary>Waits for <paramref name="process"/> to end, for <see cref="Limit"/> at most (then the run fails).</summary>
        private static Task ExitedAsync(Process process, string name, CancellationToken cancellationToken) =>
            ExitedAsync(process, Limit, () => $"{name} did not end within {Limit.TotalSeconds:F0} s", cancellationToken);

        /// <summary>Waits for <paramref name="process"/> to end, for <paramref name="limit"/> at most (then the run fails with <paramref name="failure"/>).</summary>
        private static async Task ExitedAsync(Process process, TimeSpan limit, Func<string> failure, CancellationToken cancellationToken)
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(limit);
            try
            {
                await process.WaitForExitAsync(timeout.Token);
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                throw new BenchFailedException(failure());
            }
        }

        private static Process Start(string file, string[] arguments, bool redirectInput)
        {
            var info = new ProcessStartInfo(file, arguments)
            {
                RedirectStandardOutput = true,
                RedirectStandardInput = redirectInput,
                UseShellExecute = false,
            };
            // bash's `times` writes its seconds with the locale's decimal separator ("0m0,210s" under de_DE), which
            // ChildCpu would read as 210 s: the C locale for the children, whatever the user's.
            info.Environment["LC_ALL"] = "C";
            return Process.Start(info) ?? throw new InvalidOperationException($"{file} did not start");
        }

        /// <summary>
        /// Arrival times at our subscriber: the first batch's and the one that completes <c>count</c>. The rate counts the
        /// messages after the first batch over the time between them, as mosquitto_sub's stamps count those after the first.
        /// </summary>
        private sealed class Arrivals(int count)
        {
            private int _received;
            private int _firstBatch;
            private long _first;
            private long _last;

            public TaskCompletionSource All { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

            public double Rate => (count - _firstBatch) / Stopwatch.GetElapsedTime(_first, _last).TotalSeconds;

            /// <summary>Waits for the last message, for <paramref name="limit"/> at most (then the run fails).</summary>
            public async Task WaitAsync(TimeSpan limit, CancellationToken cancellationToken)
            {
                try
                {
                    await All.Task.WaitAsync(limit, cancellationToken);
                }
                catch (TimeoutException)
                {
                    throw new BenchFailedException($"our subscriber received {Volatile.Read(ref _received)} of {count} messages within {limit.TotalSeconds:F0} s");
                }
            }

            /// <summary>Called by the connection's handler, one batch at a time.</summary>
            public void Add(int messages)
            {
                var now = Stopwatch.GetTimestamp();
                if (_received == 0)
                {
                    _first = now;
                    _firstBatch = messages;
                }

                if ((_received += messages) >= count && _last == 0)
                {
                    _last = now;
                    All.TrySetResult();
                }
            }
        }

        /// <summary>
        /// mosquitto_sub through bash (whose `times` prints the CPU time of the client it ran), until a marker and
        /// <c>count</c> messages, each stamped (-F %U) into a file. The marker is a retained message on the topic, published
        /// before mosquitto_sub starts: the broker sends it once the subscription is in place, so its stamp in the file says
        /// the subscriber is ready; it is cleared when the subscriber is done.
        /// </summary>
        private sealed class StampingSubscriber : IAsyncDisposable
        {
            private readonly Process _process;
            private readonly Task<string> _times;
            private readonly string _stamps;
            private readonly BrokerConnection _marker;
            private readonly string _topic;
            private readonly int _count;

            private StampingSubscriber(Process process, string stamps, BrokerConnection marker, string topic, int count)
            {
                _process = process;
                _times = process.StandardOutput.ReadToEndAsync(CancellationToken.None);
                _stamps = stamps;
                _marker = marker;
                _topic = topic;
                _count = count;
            }

            /// <summary>Publishes the marker with <paramref name="marker"/>, starts mosquitto_sub and returns once the marker reached it.</summary>
            public static async Task<StampingSubscriber> StartAsync(BrokerConnection marker, string[] common, string topic, int count, CancellationToken cancellationToken)
            {
                await marker.PublishAsync(topic, "marker"u8.ToArray(), MqttQualityOfServiceLevel.AtLeastOnce, retain: true, orderKey: null, cancellationToken);
                var stamps = Path.GetTempFileName();
                var process = Start(
                    "bash",
                    ["-c", Shell("mosquitto_sub", [.. common, "-C", (count + 1).ToString(CultureInfo.InvariantCulture), "-F", "%U"]) + " > '" + stamps + "'; times"],
                    redirectInput: false);
                var subscriber = new StampingSubscriber(process, stamps, marker, topic, count);
                try
                {
                    var deadline = Stopwatch.StartNew();
                    while (new FileInfo(stamps).Length == 0)
                    {
                        if (process.HasExited)
                        {
                            throw new BenchFailedException($"mosquitto_sub exited ({process.ExitCode}) before it received the marker on {topic}");
                        }

                        if (deadline.Elapsed > TimeSpan.FromSeconds(10))
                        {
                            throw new BenchFailedException($"mosquitto_sub did not receive the marker on {topic} within 10 s");
                        }

                        await Task.Delay(5, cancellationToken);
                    }

                    return subscriber;
                }
                catch
                {
                    await subscriber.DisposeAsync();
                    throw;
                }
            }

            /// <summary>Waits for mosquitto_sub's end; the rate between its first and last message, and its CPU time.</summary>
            public async Task<(double Rate, TimeSpan Cpu)> FinishAsync(TimeSpan limit, CancellationToken cancellationToken)
            {
                await ExitedAsync(
                    _process, limit, () => $"mosquitto_sub received {File.ReadLines(_stamps).Count() - 1} of {_count} messages on {_topic} within {limit.TotalSeconds:F0} s", cancellationToken);

                var cpu = ChildCpu(await _times);
                var lines = await File.ReadAllLinesAsync(_stamps, cancellationToken);
                if (lines.Length != _count + 1)
                {
                    throw new BenchFailedException($"mosquitto_sub stamped {lines.Length - 1} of {_count} messages on {_topic}");
                }

                // Line 0 is the marker; seconds with nanoseconds, exact in decimal.
                var elapsed = decimal.Parse(lines[^1], CultureInfo.InvariantCulture) - decimal.Parse(lines[1], CultureInfo.InvariantCulture);
                return ((_count - 1) / (double)elapsed, cpu);
            }

            public async ValueTask DisposeAsync()
            {
                ChildProcess.Stop(_process);
                File.Delete(_stamps);
                // An empty retained message clears the marker (the topic is this run's alone; the broker persists retained messages).
                using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
                await _marker.PublishAsync(_topic, Array.Empty<byte>(), MqttQualityOfServiceLevel.AtLeastOnce, retain: true, orderKey: null, timeout.Token);
            }
        }
    }
}
