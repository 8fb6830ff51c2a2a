using System.Runtime.InteropServices;

namespace Propeller.Edge.Execution;

/// <summary>
/// How a child process ended, in the form of Rust's <c>ExitStatus</c> that the original reports (spec §6):
/// <c>exit status: 3</c>, or for a signal <c>signal: 9 (SIGKILL)</c>. .NET reports a child killed by signal N as exit code
/// 128 + N, the same as a child that exited with that code (the wasmtime CLI exits with 134 after a trap), so the wait
/// status is read from a pidfd opened while the child runs: Linux 6.15 and later keep it there after .NET has reaped the
/// child (PIDFD_GET_INFO with PIDFD_INFO_EXIT). Elsewhere (an older kernel or libc, another OS) the exit code is all there
/// is, and a signal is reported as <c>exit status: 128+N</c>.
/// </summary>
internal sealed partial class ChildStatus : IDisposable
{
    private const ulong PidfdInfoExit = 1 << 3;

    /// <summary><c>_IOWR(PIDFS_IOCTL_MAGIC 0xFF, 11, struct pidfd_info)</c> with the 64-byte first version of the struct.</summary>
    private const ulong PidfdGetInfo = 0xC040FF0B;

    private static readonly string[] Names =
    [
        "", "SIGHUP", "SIGINT", "SIGQUIT", "SIGILL", "SIGTRAP", "SIGABRT", "SIGBUS", "SIGFPE", "SIGKILL", "SIGUSR1", "SIGSEGV",
        "SIGUSR2", "SIGPIPE", "SIGALRM", "SIGTERM", "SIGSTKFLT", "SIGCHLD", "SIGCONT", "SIGSTOP", "SIGTSTP", "SIGTTIN",
        "SIGTTOU", "SIGURG", "SIGXCPU", "SIGXFSZ", "SIGVTALRM", "SIGPROF", "SIGWINCH", "SIGIO", "SIGPWR", "SIGSYS",
    ];

    private readonly int _pidfd;

    private ChildStatus(int pidfd) => _pidfd = pidfd;

    /// <summary>Opens a pidfd for the running child <paramref name="pid"/> when the system has them.</summary>
    public static ChildStatus Watch(int pid)
    {
        if (!OperatingSystem.IsLinux())
        {
            return new ChildStatus(-1);
        }

        try
        {
            return new ChildStatus(PidfdOpen(pid, 0));
        }
        catch (Exception ex) when (ex is DllNotFoundException or EntryPointNotFoundException)
        {
            return new ChildStatus(-1);
        }
    }

    /// <summary>The child's status once it has exited, as Rust writes it; <paramref name="exitCode"/> is .NET's.</summary>
    public string Describe(int exitCode)
    {
        var info = new PidfdInfo { Mask = PidfdInfoExit };
        if (_pidfd >= 0 && Ioctl(_pidfd, PidfdGetInfo, ref info) == 0 && (info.Mask & PidfdInfoExit) != 0)
        {
            var signal = info.ExitCode & 0x7F;
            if (signal is not 0 and not 0x7F)
            {
                var name = signal < Names.Length ? $" ({Names[signal]})" : "";
                return $"signal: {signal}{name}{((info.ExitCode & 0x80) != 0 ? " (core dumped)" : "")}";
            }

            return $"exit status: {(info.ExitCode >> 8) & 0xFF}";
        }

        return $"exit status: {exitCode}";
    }

    public void Dispose()
    {
        if (_pidfd >= 0)
        {
            _ = Close(_pidfd);
        }
    }

    [DllImport("libc", EntryPoint = "pidfd_open")]
    [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
    private static extern int PidfdOpen(int pid, uint flags);

    [DllImport("libc", EntryPoint = "ioctl")]
    [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
    private static extern int Ioctl(int fd, ulong request, ref PidfdInfo info);

    [DllImport("libc", EntryPoint = "close")]
    [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
    private static extern int Close(int fd);

    /// <summary><c>struct pidfd_info</c>'s first 64 bytes (PIDFD_INFO_SIZE_VER0); <c>exit_code</c> is the wait status.</summary>
    [StructLayout(LayoutKind.Sequential)]
    private struct PidfdInfo
    {
        public ulong Mask;
        public ulong CgroupId;
        public uint Pid;
        public uint Tgid;
        public uint Ppid;
        public uint Ruid;
        public uint Rgid;
        public uint Euid;
        public uint Egid;
        public uint Suid;
        public uint Sgid;
        public uint Fsuid;
        public uint Fsgid;
        public int ExitCode;
    }
}
