using System.Net;
using System.Net.Sockets;
using System.Reflection;
using System.Runtime.InteropServices;
using Propeller.Contracts.Mqtt;
using Propeller.Edge.Configuration;
using Propeller.Edge.Monitoring;

namespace Propeller.Edge.Messaging;

/// <summary>The discovery metadata (spec §1.3): configured description, tags and location plus, unless
/// PROPLET_COLLECT_SYSTEM_INFO is off, the machine's IP, environment, OS, hostname, architecture and memory.</summary>
public static class Discovery
{
    public static DiscoveryMetadata Metadata(PropletSettings settings, string wasmRuntime)
    {
        ArgumentNullException.ThrowIfNull(settings);
        var metadata = new DiscoveryMetadata
        {
            Description = settings.Description,
            Tags = settings.Tags.Count > 0 ? settings.Tags : null,
            Location = settings.Location,
            PropletVersion = typeof(Discovery).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion.Split('+')[0] ?? "0.0.0",
            WasmRuntime = wasmRuntime,
        };
        if (!settings.CollectSystemInfo)
        {
            return metadata;
        }

        return metadata with
        {
            Ip = LocalIp(),
            Environment = File.Exists("/.dockerenv") ? "docker" : "binary",
            Os = OperatingSystem.IsLinux() ? "linux" : OperatingSystem.IsMacOS() ? "macos" : OperatingSystem.IsWindows() ? "windows" : "unknown",
            Hostname = Dns.GetHostName() is { Length: > 0 } host ? host : null,
            CpuArch = RuntimeInformation.OSArchitecture switch
            {
                Architecture.X64 => "x86_64",
                Architecture.Arm64 => "aarch64",
                Architecture.RiscV64 => "riscv64",
                Architecture.X86 => "x86",
                Architecture.Arm => "arm",
                var other => other.ToString().ToLowerInvariant(),
            },
            TotalMemoryBytes = SystemSampler.TotalMemoryBytes(),
        };
    }

    /// <summary>The address a UDP socket "connected" to 8.8.8.8:80 would use (no packet is sent); null offline.</summary>
    private static string? LocalIp()
    {
        try
        {
            using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
            socket.Connect(IPAddress.Parse("8.8.8.8"), 80);
            return (socket.LocalEndPoint as IPEndPoint)?.Address.ToString();
        }
        catch (SocketException)
        {
            return null;
        }
    }
}
