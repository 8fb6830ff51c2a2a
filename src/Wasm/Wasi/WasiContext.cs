using System.Buffers.Binary;
using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;

namespace Propeller.Wasm.Wasi;

/// <summary>
/// WASI preview1 (`wasi_snapshot_preview1`) for one instance: its own descriptor table, argv, environment and streams.
/// <see cref="DefineIn"/> adds all 46 functions to a linker; every call returns an errno (never throws into the host),
/// except proc_exit, which ends the program with <see cref="WasiExitException"/>.
/// </summary>
public sealed partial class WasiContext
{
    public const string ModuleName = "wasi_snapshot_preview1";

    private const int MaxDescriptors = 1024;

    private readonly WasiConfiguration _config;
    private readonly Dictionary<int, FileDescriptor> _fds = [];
    private readonly byte[][] _args;
    private readonly byte[][] _env;
    private readonly long _startTicks = Stopwatch.GetTimestamp();

    public WasiContext(WasiConfiguration config)
    {
        ArgumentNullException.ThrowIfNull(config);
        _config = config;
        _args = [.. config.Args.Select(a => Encoding.UTF8.GetBytes(a + "\0"))];
        _env = [.. config.Environment.Select(e => Encoding.UTF8.GetBytes($"{e.Key}={e.Value}\0"))];
        _fds[0] = new FileDescriptor { Kind = DescriptorKind.Stdin, CanRead = true };
        _fds[1] = new FileDescriptor { Kind = DescriptorKind.Stdout, CanWrite = true };
        _fds[2] = new FileDescriptor { Kind = DescriptorKind.Stderr, CanWrite = true };
        var fd = 3;
        foreach (var (host, guest) in config.Preopens)
        {
            _fds[fd++] = new FileDescriptor
            {
                Kind = DescriptorKind.Directory,
                Root = host,
                PreopenName = guest,
                RightsBase = FileDescriptor.RightsDirectory,
                RightsInheriting = FileDescriptor.RightsDirectory | FileDescriptor.RightsFile,
            };
        }
    }

    /// <summary>Exit code passed to proc_exit, if the program called it.</summary>
    public int? ExitCode { get; private set; }

    /// <summary>Runs the `_start` export; returns the exit code (0 when _start returns). Traps propagate.</summary>
    public int RunStart(Instance instance)
    {
        ArgumentNullException.ThrowIfNull(instance);
        var start = instance.GetFunction("_start") ?? throw new WasmException("the module has no exported function '_start'");
        try
        {
            start.Call();
            return 0;
        }
        catch (WasiExitException exit)
        {
            return exit.ExitCode;
        }
        finally
        {
            _config.StandardOutput?.Flush();
            _config.StandardError?.Flush();
        }
    }

    /// <summary>Defines every `wasi_snapshot_preview1` function in <paramref name="linker"/>, bound to this context.</summary>
    public void DefineIn(Linker linker)
    {
        ArgumentNullException.ThrowIfNull(linker);
        Def(linker, "args_get", "ii", a => ArgsGet(a, _args));
        Def(linker, "args_sizes_get", "ii", a => SizesGet(a, _args));
        Def(linker, "environ_get", "ii", a => ArgsGet(a, _env));
        Def(linker, "environ_sizes_get", "ii", a => SizesGet(a, _env));
        Def(linker, "clock_res_get", "ii", ClockResGet);
        Def(linker, "clock_time_get", "iIi", ClockTimeGet);
        Def(linker, "fd_advise", "iIIi", FdAdvise);
        Def(linker, "fd_allocate", "iII", FdAllocate);
        Def(linker, "fd_close", "i", FdClose);
        Def(linker, "fd_datasync", "i", FdSync);
        Def(linker, "fd_sync", "i", FdSync);
        Def(linker, "fd_fdstat_get", "ii", FdFdstatGet);
        Def(linker, "fd_fdstat_set_flags", "ii", FdFdstatSetFlags);
        Def(linker, "fd_fdstat_set_rights", "iII", FdFdstatSetRights);
        Def(linker, "fd_filestat_get", "ii", FdFilestatGet);
        Def(linker, "fd_filestat_set_size", "iI", FdFilestatSetSize);
        Def(linker, "fd_filestat_set_times", "iIIi", FdFilestatSetTimes);
        Def(linker, "fd_pread", "iiiIi", a => FdRead(a, a.I64(3)));
        Def(linker, "fd_pwrite", "iiiIi", a => FdWrite(a, a.I64(3)));
        Def(linker, "fd_read", "iiii", a => FdRead(a, null));
        Def(linker, "fd_write", "iiii", a => FdWrite(a, null));
        Def(linker, "fd_readdir", "iiiIi", FdReaddir);
        Def(linker, "fd_renumber", "ii", FdRenumber);
        Def(linker, "fd_seek", "iIii", FdSeek);
        Def(linker, "fd_tell", "ii", FdTell);
        Def(linker, "fd_prestat_get", "ii", FdPrestatGet);
        Def(linker, "fd_prestat_dir_name", "iii", FdPrestatDirName);
        Def(linker, "path_create_directory", "iii", PathCreateDirectory);
        Def(linker, "path_filestat_get", "iiiii", PathFilestatGet);
        Def(linker, "path_filestat_set_times", "iiiiIIi", PathFilestatSetTimes);
        Def(linker, "path_link", "iiiiiii", PathLink);
        Def(linker, "path_open", "iiiiiIIii", PathOpen);
        Def(linker, "path_readlink", "iiiiii", PathReadlink);
        Def(linker, "path_remove_directory", "iii", PathRemoveDirectory);
        Def(linker, "path_rename", "iiiiii", PathRename);
        Def(linker, "path_symlink", "iiiii", PathSymlink);
        Def(linker, "path_unlink_file", "iii", PathUnlinkFile);
        Def(linker, "poll_oneoff", "iiii", PollOneoff);
        Def(linker, "random_get", "ii", RandomGet);
        Def(linker, "sched_yield", "", _ =>
        {
            Thread.Yield();
            return Errno.Success;
        });
        Def(linker, "proc_raise", "i", _ => Errno.Nosys);
        Def(linker, "sock_accept", "iii", a => SockCheck(a.I32(0)));
        Def(linker, "sock_recv", "iiiiii", a => SockCheck(a.I32(0)));
        Def(linker, "sock_send", "iiiii", a => SockCheck(a.I32(0)));
        Def(linker, "sock_shutdown", "ii", a => SockCheck(a.I32(0)));
        linker.DefineFunction(ModuleName, "proc_exit", new FuncType([ValueKind.I32], []), (_, args, _) =>
        {
            ExitCode = args[0].AsI32;
            throw new WasiExitException(args[0].AsI32);
        });
    }

    private delegate Errno Handler(Args args);

    private static void Def(Linker linker, string name, string signature, Handler handler)
    {
        var parameters = signature.Select(c => c == 'I' ? ValueKind.I64 : ValueKind.I32).ToArray();
        linker.DefineFunction(ModuleName, name, new FuncType(parameters, [ValueKind.I32]), (caller, arguments, results) =>
        {
            Errno errno;
            try
            {
                errno = handler(new Args(caller, arguments.ToArray()));
            }
            catch (WasiErrorException e)
            {
                errno = e.Errno;
            }
            catch (ArgumentOutOfRangeException)
            {
                errno = Errno.Fault;
            }
            catch (IndexOutOfRangeException)
            {
                errno = Errno.Fault;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or NotSupportedException)
            {
                errno = MapHostError(e);
            }

            results[0] = Value.I32((int)errno);
        });
    }

    /// <summary>A call's arguments plus checked access to the caller's memory.</summary>
    private readonly struct Args(Caller caller, Value[] values)
    {
        public byte[] Mem => caller.GetMemory("memory")?.Buffer ?? throw new WasiErrorException(Errno.Fault);

        public Store? Store => caller.Store;

        public int I32(int i) => values[i].AsI32;

        public long I64(int i) => values[i].AsI64;

        public Span<byte> Span(int ptr, int len)
        {
            var mem = Mem;
            if ((uint)ptr > (uint)mem.Length || (uint)len > (uint)(mem.Length - ptr))
            {
                throw new WasiErrorException(Errno.Fault);
            }

            return mem.AsSpan(ptr, len);
        }

        public void U32(int ptr, int value) => BinaryPrimitives.WriteInt32LittleEndian(Span(ptr, 4), value);

        public void U64(int ptr, long value) => BinaryPrimitives.WriteInt64LittleEndian(Span(ptr, 8), value);

        public int ReadU32(int ptr) => BinaryPrimitives.ReadInt32LittleEndian(Span(ptr, 4));

        public long ReadU64(int ptr) => BinaryPrimitives.ReadInt64LittleEndian(Span(ptr, 8));

        public string String(int ptr, int len)
        {
            var bytes = Span(ptr, len);
            try
            {
                return new UTF8Encoding(false, true).GetString(bytes);
            }
            catch (DecoderFallbackException)
            {
                throw new WasiErrorException(Errno.Inval);
            }
        }

        /// <summary>The (ptr, len) pairs of an iovec array.</summary>
        public (int Ptr, int Len)[] Iovecs(int iovs, int count)
        {
            if (count < 0 || count > 1024)
            {
                throw new WasiErrorException(Errno.Inval);
            }

            var result = new (int, int)[count];
            for (var i = 0; i < count; i++)
            {
                result[i] = (ReadU32(iovs + (i * 8)), ReadU32(iovs + (i * 8) + 4));
                Span(result[i].Item1, result[i].Item2);
            }

            return result;
        }
    }

    private static Errno ArgsGet(Args a, byte[][] items)
    {
        int ptrs = a.I32(0), buf = a.I32(1);
        foreach (var item in items)
        {
            a.U32(ptrs, buf);
            item.CopyTo(a.Span(buf, item.Length));
            ptrs += 4;
            buf += item.Length;
        }

        return Errno.Success;
    }

    private static Errno SizesGet(Args a, byte[][] items)
    {
        a.U32(a.I32(0), items.Length);
        a.U32(a.I32(1), items.Sum(i => i.Length));
        return Errno.Success;
    }

    private Errno ClockResGet(Args a)
    {
        var id = a.I32(0);
        if (id is < 0 or > 3)
        {
            return Errno.Inval;
        }

        _ = this;
        a.U64(a.I32(1), id == 0 ? 1000 : 1);
        return Errno.Success;
    }

    private Errno ClockTimeGet(Args a)
    {
        long now;
        switch (a.I32(0))
        {
            case 0:
                now = (DateTime.UtcNow - DateTime.UnixEpoch).Ticks * 100;
                break;
            case 1:
                now = (long)(Stopwatch.GetTimestamp() * (1e9 / Stopwatch.Frequency));
                break;
            case 2:
            case 3:
                now = (long)((Stopwatch.GetTimestamp() - _startTicks) * (1e9 / Stopwatch.Frequency));
                break;
            default:
                return Errno.Inval;
        }

        a.U64(a.I32(2), now);
        return Errno.Success;
    }

    private static Errno RandomGet(Args a)
    {
        RandomNumberGenerator.Fill(a.Span(a.I32(0), a.I32(1)));
        return Errno.Success;
    }

    private Errno SockCheck(int fd) => _fds.ContainsKey(fd) ? Errno.Notsock : Errno.Badf;

    private FileDescriptor Get(int fd) => _fds.GetValueOrDefault(fd) ?? throw new WasiErrorException(Errno.Badf);

    private int Allocate(FileDescriptor entry)
    {
        for (var fd = 0; fd < MaxDescriptors; fd++)
        {
            if (_fds.TryAdd(fd, entry))
            {
                return fd;
            }
        }

        entry.Handle?.Dispose();
        throw new WasiErrorException(Errno.Mfile);
    }

    private Errno FdClose(Args a)
    {
        var fd = a.I32(0);
        var entry = Get(fd);
        entry.Handle?.Dispose();
        _fds.Remove(fd);
        return Errno.Success;
    }

    private Errno FdRenumber(Args a)
    {
        int from = a.I32(0), to = a.I32(1);
        var entry = Get(from);
        var target = Get(to);
        if (from == to)
        {
            return Errno.Success;
        }

        target.Handle?.Dispose();
        _fds[to] = entry;
        _fds.Remove(from);
        return Errno.Success;
    }

    private Errno FdPrestatGet(Args a)
    {
        var entry = Get(a.I32(0));
        if (entry.PreopenName is null)
        {
            return Errno.Badf;
        }

        var buf = a.I32(1);
        a.U32(buf, 0);
        a.U32(buf + 4, Encoding.UTF8.GetByteCount(entry.PreopenName));
        return Errno.Success;
    }

    private Errno FdPrestatDirName(Args a)
    {
        var entry = Get(a.I32(0));
        if (entry.PreopenName is null)
        {
            return Errno.Badf;
        }

        var name = Encoding.UTF8.GetBytes(entry.PreopenName);
        if (a.I32(2) < name.Length)
        {
            return Errno.Nametoolong;
        }

        name.CopyTo(a.Span(a.I32(1), name.Length));
        return Errno.Success;
    }

    private Errno FdFdstatGet(Args a)
    {
        var entry = Get(a.I32(0));
        var buf = a.I32(1);
        a.Span(buf, 24).Clear();
        a.Span(buf, 1)[0] = FileType(entry);
        BinaryPrimitives.WriteUInt16LittleEndian(a.Span(buf + 2, 2), entry.Flags);
        a.U64(buf + 8, entry.RightsBase);
        a.U64(buf + 16, entry.RightsInheriting);
        return Errno.Success;
    }

    private Errno FdFdstatSetFlags(Args a)
    {
        var entry = Get(a.I32(0));
        var flags = a.I32(1);
        if ((flags & ~0x1F) != 0)
        {
            return Errno.Inval;
        }

        if (entry.Kind != DescriptorKind.File)
        {
            return entry.Kind == DescriptorKind.Directory ? Errno.Badf : Errno.Success;
        }

        // Only APPEND and NONBLOCK can change on an open file; the sync flags are fixed at open.
        entry.Flags = (ushort)((entry.Flags & ~0x5) | (flags & 0x5));
        return Errno.Success;
    }

    private Errno FdFdstatSetRights(Args a)
    {
        var entry = Get(a.I32(0));
        long rights = a.I64(1), inheriting = a.I64(2);
        if ((rights & ~entry.RightsBase) != 0 || (inheriting & ~entry.RightsInheriting) != 0)
        {
            return Errno.Notcapable;
        }

        entry.RightsBase = rights;
        entry.RightsInheriting = inheriting;
        return Errno.Success;
    }

    private static byte FileType(FileDescriptor entry) => entry.Kind switch
    {
        DescriptorKind.Directory => FileDescriptor.FileTypeDirectory,
        DescriptorKind.File => FileDescriptor.FileTypeRegularFile,
        _ => FileDescriptor.FileTypeCharacterDevice,
    };

    private Errno FdRead(Args a, long? offset)
    {
        var entry = Get(a.I32(0));
        var iovs = a.Iovecs(a.I32(1), a.I32(2));
        var nread = a.I32(offset is null ? 3 : 4);
        if ((entry.RightsBase & (1L << 1)) == 0 && entry.Kind != DescriptorKind.Directory)
        {
            return Errno.Notcapable;
        }

        if (offset < 0)
        {
            return Errno.Inval;
        }

        long total = 0;
        switch (entry.Kind)
        {
            case DescriptorKind.Stdin:
                if (offset is not null)
                {
                    return Errno.Spipe;
                }

                var input = _config.StandardInput;
                foreach (var (ptr, len) in iovs)
                {
                    var n = input?.Read(a.Span(ptr, len)) ?? 0;
                    total += n;
                    if (n < len)
                    {
                        break;
                    }
                }

                break;
            case DescriptorKind.File when entry.CanRead:
                var position = offset ?? entry.Position;
                foreach (var (ptr, len) in iovs)
                {
                    var n = RandomAccess.Read(entry.Handle!, a.Span(ptr, len), position);
                    position += n;
                    total += n;
                    if (n < len)
                    {
                        break;
                    }
                }

                if (offset is null)
                {
                    entry.Position = position;
                }

                break;
            case DescriptorKind.Directory:
                return Errno.Isdir;
            default:
                return Errno.Badf;
        }

        a.U32(nread, (int)total);
        return Errno.Success;
    }

    private Errno FdWrite(Args a, long? offset)
    {
        var entry = Get(a.I32(0));
        var iovs = a.Iovecs(a.I32(1), a.I32(2));
        var nwritten = a.I32(offset is null ? 3 : 4);
        if ((entry.RightsBase & (1L << 6)) == 0 && entry.Kind != DescriptorKind.Directory)
        {
            return Errno.Notcapable;
        }

        if (offset < 0)
        {
            return Errno.Inval;
        }

        long total = 0;
        switch (entry.Kind)
        {
            case DescriptorKind.Stdout or DescriptorKind.Stderr:
                if (offset is not null)
                {
                    return Errno.Spipe;
                }

                var sink = entry.Kind == DescriptorKind.Stdout ? _config.StandardOutput : _config.StandardError;
                foreach (var (ptr, len) in iovs)
                {
                    sink?.Write(a.Span(ptr, len));
                    total += len;
                }

                break;
            case DescriptorKind.File when entry.CanWrite:
                var position = offset ?? (entry.Append ? RandomAccess.GetLength(entry.Handle!) : entry.Position);
                foreach (var (ptr, len) in iovs)
                {
                    RandomAccess.Write(entry.Handle!, a.Span(ptr, len), position);
                    position += len;
                    total += len;
                }

                if (offset is null)
                {
                    entry.Position = position;
                }

                break;
            case DescriptorKind.Directory:
                return Errno.Isdir;
            default:
                return Errno.Badf;
        }

        a.U32(nwritten, (int)Math.Min(total, int.MaxValue));
        return Errno.Success;
    }

    private Errno FdSeek(Args a)
    {
        var entry = Get(a.I32(0));
        long delta = a.I64(1);
        var whence = a.I32(2);
        if (entry.Kind == DescriptorKind.Directory)
        {
            return Errno.Badf;
        }

        if (entry.Kind != DescriptorKind.File)
        {
            return Errno.Spipe;
        }

        long target = whence switch
        {
            0 => delta,
            1 => entry.Position + delta,
            2 => RandomAccess.GetLength(entry.Handle!) + delta,
            _ => -1,
        };
        if (whence is < 0 or > 2 || target < 0)
        {
            return Errno.Inval;
        }

        entry.Position = target;
        a.U64(a.I32(3), target);
        return Errno.Success;
    }

    private Errno FdTell(Args a)
    {
        var entry = Get(a.I32(0));
        if (entry.Kind == DescriptorKind.Directory)
        {
            return Errno.Badf;
        }

        if (entry.Kind != DescriptorKind.File)
        {
            return Errno.Spipe;
        }

        a.U64(a.I32(1), entry.Position);
        return Errno.Success;
    }

    private Errno FdAdvise(Args a)
    {
        var entry = Get(a.I32(0));
        if (a.I32(3) is < 0 or > 5 || a.I64(1) < 0 || a.I64(2) < 0)
        {
            return Errno.Inval;
        }

        return entry.Kind switch
        {
            DescriptorKind.File => Errno.Success,
            DescriptorKind.Directory => Errno.Badf,
            _ => Errno.Spipe,
        };
    }

    private Errno FdAllocate(Args a)
    {
        var entry = Get(a.I32(0));
        long offset = a.I64(1), length = a.I64(2);
        if (entry.Kind != DescriptorKind.File || !entry.CanWrite)
        {
            return Errno.Badf;
        }

        if (offset < 0 || length <= 0 || offset > long.MaxValue - length)
        {
            return Errno.Inval;
        }

        if (RandomAccess.GetLength(entry.Handle!) < offset + length)
        {
            RandomAccess.SetLength(entry.Handle!, offset + length);
        }

        return Errno.Success;
    }

    private Errno FdSync(Args a)
    {
        var entry = Get(a.I32(0));
        if (entry.Kind == DescriptorKind.File && entry.CanWrite)
        {
            RandomAccess.FlushToDisk(entry.Handle!);
        }

        return Errno.Success;
    }

    private Errno FdFilestatGet(Args a)
    {
        var entry = Get(a.I32(0));
        var buf = a.I32(1);
        if (entry.Kind is DescriptorKind.Directory or DescriptorKind.File)
        {
            WriteFilestat(a, buf, entry.HostPath, entry.Kind == DescriptorKind.File ? RandomAccess.GetLength(entry.Handle!) : null);
        }
        else
        {
            a.Span(buf, 64).Clear();
            a.Span(buf + 16, 1)[0] = FileDescriptor.FileTypeCharacterDevice;
            a.U64(buf + 24, 1);
        }

        return Errno.Success;
    }

    private Errno FdFilestatSetSize(Args a)
    {
        var entry = Get(a.I32(0));
        var size = a.I64(1);
        if (entry.Kind != DescriptorKind.File)
        {
            return entry.Kind == DescriptorKind.Directory ? Errno.Badf : Errno.Inval;
        }

        if (!entry.CanWrite)
        {
            return Errno.Badf;
        }

        if (size < 0)
        {
            return Errno.Inval;
        }

        RandomAccess.SetLength(entry.Handle!, size);
        return Errno.Success;
    }

    private Errno FdFilestatSetTimes(Args a)
    {
        var entry = Get(a.I32(0));
        if (entry.Kind is not (DescriptorKind.File or DescriptorKind.Directory))
        {
            return Errno.Badf;
        }

        return SetTimes(entry.HostPath, a.I64(1), a.I64(2), a.I32(3));
    }

    private static Errno SetTimes(string path, long atim, long mtim, int flags)
    {
        if ((flags & ~0xF) != 0 || ((flags & 3) == 3) || ((flags & 12) == 12))
        {
            return Errno.Inval;
        }

        if (Native.HasStat)
        {
            long[] times =
            [
                (flags & 2) != 0 ? 0 : atim / 1_000_000_000, (flags & 2) != 0 ? Native.UtimeNow : (flags & 1) != 0 ? atim % 1_000_000_000 : Native.UtimeOmit,
                (flags & 8) != 0 ? 0 : mtim / 1_000_000_000, (flags & 8) != 0 ? Native.UtimeNow : (flags & 4) != 0 ? mtim % 1_000_000_000 : Native.UtimeOmit,
            ];
            return Native.UTimeNsAt(Native.AtFdCwd, path, times, Native.AtSymlinkNoFollow) == 0
                ? Errno.Success
                : MapErrno(System.Runtime.InteropServices.Marshal.GetLastPInvokeError());
        }

        var now = DateTime.UtcNow;
        if ((flags & 1) != 0 || (flags & 2) != 0)
        {
            File.SetLastAccessTimeUtc(path, (flags & 2) != 0 ? now : FromNanos(atim));
        }

        if ((flags & 4) != 0 || (flags & 8) != 0)
        {
            File.SetLastWriteTimeUtc(path, (flags & 8) != 0 ? now : FromNanos(mtim));
        }

        return Errno.Success;
    }

    private static DateTime FromNanos(long ns) => DateTime.UnixEpoch.AddTicks(ns / 100);

    private static long ToNanos(DateTime time) => (time.ToUniversalTime() - DateTime.UnixEpoch).Ticks * 100;

    /// <summary>Writes a 64-byte filestat for a host path (not following a final symlink).</summary>
    private static void WriteFilestat(Args a, int buf, string path, long? size)
    {
        FileSystemInfo info = Directory.Exists(path) && new DirectoryInfo(path).LinkTarget is null
            ? new DirectoryInfo(path)
            : new FileInfo(path);
        if (!info.Exists && info.LinkTarget is null)
        {
            throw new WasiErrorException(Errno.Noent);
        }

        var type = info.LinkTarget is not null ? FileDescriptor.FileTypeSymbolicLink
            : info is DirectoryInfo ? FileDescriptor.FileTypeDirectory
            : FileDescriptor.FileTypeRegularFile;
        var span = a.Span(buf, 64);
        span.Clear();
        a.U64(buf, 1);
        a.U64(buf + 8, Inode(path));
        span[16] = type;
        a.U64(buf + 24, 1);
        if (Native.Stat(path) is { } stat)
        {
            a.U64(buf, stat[0]);
            a.U64(buf + 8, stat[1]);
            a.U64(buf + 24, stat[2]);
            a.U64(buf + 32, size ?? stat[3]);
            a.U64(buf + 40, stat[4]);
            a.U64(buf + 48, stat[5]);
            a.U64(buf + 56, stat[6]);
            return;
        }

        a.U64(buf + 32, size ?? (info is FileInfo file && type == FileDescriptor.FileTypeRegularFile ? file.Length
            : type == FileDescriptor.FileTypeSymbolicLink ? Encoding.UTF8.GetByteCount(info.LinkTarget!) : 4096));
        a.U64(buf + 40, ToNanos(info.LastAccessTimeUtc));
        a.U64(buf + 48, ToNanos(info.LastWriteTimeUtc));
        a.U64(buf + 56, ToNanos(info.LastWriteTimeUtc));
    }

    /// <summary>A stable stand-in for the inode number: FNV-1a of the host path.</summary>
    private static long Inode(string path)
    {
        var hash = 14695981039346656037UL;
        foreach (var c in path)
        {
            hash = (hash ^ c) * 1099511628211UL;
        }

        return (long)(hash >> 1);
    }

    private static Errno MapHostError(Exception e)
    {
        switch (e)
        {
            case FileNotFoundException or DirectoryNotFoundException:
                return Errno.Noent;
            case UnauthorizedAccessException:
                return Errno.Acces;
            case PathTooLongException:
                return Errno.Nametoolong;
            case NotSupportedException:
                return Errno.Notsup;
        }

        // On Unix, .NET puts the raw errno in the low bits of HResult for errors it has no exception type for.
        return MapErrno(e.HResult & 0xFFFF);
    }

    /// <summary>Linux errno to WASI errno.</summary>
    private static Errno MapErrno(int errno)
    {
        return errno switch
        {
            1 => Errno.Perm,
            2 => Errno.Noent,
            13 => Errno.Acces,
            16 => Errno.Busy,
            17 => Errno.Exist,
            18 => Errno.Xdev,
            20 => Errno.Notdir,
            21 => Errno.Isdir,
            22 => Errno.Inval,
            27 => Errno.Fbig,
            28 => Errno.Nospc,
            31 => Errno.Mlink,
            36 => Errno.Nametoolong,
            39 => Errno.Notempty,
            40 => Errno.Loop,
            _ => Errno.Io,
        };
    }
}
