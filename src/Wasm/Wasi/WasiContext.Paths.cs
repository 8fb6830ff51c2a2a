using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;

namespace Propeller.Wasm.Wasi;

/// <summary>Path resolution confined to a preopen, the path_* functions, fd_readdir and poll_oneoff.</summary>
public sealed partial class WasiContext
{
    private const long RightFdRead = 1L << 1;
    private const long RightFdWrite = 1L << 6;
    private const int MaxSymlinkExpansions = 32;

    /// <summary>
    /// Resolves <paramref name="path"/> against directory descriptor <paramref name="dir"/> without ever leaving its preopen:
    /// components are walked one by one, `..` may not climb above the preopen root, absolute paths are refused, and
    /// every symlink met on the way (the last component only when <paramref name="followFinal"/>) is expanded here, by
    /// the same rules, so a link pointing outside is refused too. Returns the host path and whether it ended in '/'.
    /// </summary>
    private static (string Host, bool TrailingSlash, bool IsRoot) Resolve(FileDescriptor dir, string path, bool followFinal)
    {
        if (dir.Kind != DescriptorKind.Directory)
        {
            throw new WasiErrorException(Errno.Notdir);
        }

        if (path.Length == 0)
        {
            throw new WasiErrorException(Errno.Noent);
        }

        if (path.Contains('\0', StringComparison.Ordinal))
        {
            throw new WasiErrorException(Errno.Inval);
        }

        if (path.StartsWith('/'))
        {
            throw new WasiErrorException(Errno.Notcapable);
        }

        var trailing = path.EndsWith('/');
        var stack = new List<string>(dir.Relative.Split('/', StringSplitOptions.RemoveEmptyEntries));
        var floor = stack.Count;
        var pending = new LinkedList<string>(path.Split('/', StringSplitOptions.RemoveEmptyEntries));
        var expansions = 0;
        while (pending.First is { } node)
        {
            var c = node.Value;
            pending.RemoveFirst();
            if (c == ".")
            {
                continue;
            }

            if (c == "..")
            {
                if (stack.Count <= floor)
                {
                    throw new WasiErrorException(Errno.Notcapable);
                }

                stack.RemoveAt(stack.Count - 1);
                continue;
            }

            if (Encoding.UTF8.GetByteCount(c) > 255)
            {
                throw new WasiErrorException(Errno.Nametoolong);
            }

            var last = pending.Count == 0;
            var candidate = Path.Combine([dir.Root, .. stack, c]);
            if (!last || followFinal || trailing)
            {
                var target = LinkTarget(candidate);
                if (target is not null)
                {
                    if (++expansions > MaxSymlinkExpansions)
                    {
                        throw new WasiErrorException(Errno.Loop);
                    }

                    if (target.StartsWith('/'))
                    {
                        throw new WasiErrorException(Errno.Notcapable);
                    }

                    if (target.EndsWith('/'))
                    {
                        trailing |= last;
                    }

                    foreach (var part in target.Split('/', StringSplitOptions.RemoveEmptyEntries).Reverse())
                    {
                        pending.AddFirst(part);
                    }

                    continue;
                }
            }

            if (!last)
            {
                if (File.Exists(candidate))
                {
                    throw new WasiErrorException(Errno.Notdir);
                }

                if (!Directory.Exists(candidate))
                {
                    throw new WasiErrorException(Errno.Noent);
                }
            }

            stack.Add(c);
        }

        return (Path.Combine([dir.Root, .. stack]), trailing, stack.Count == 0);
    }

    private static string? LinkTarget(string hostPath)
    {
        try
        {
            return new FileInfo(hostPath).LinkTarget;
        }
        catch (IOException)
        {
            return null;
        }
    }

    private static bool IsLink(string hostPath) => LinkTarget(hostPath) is not null;

    private (string Host, bool TrailingSlash, bool IsRoot) ResolveArg(Args a, int fdArg, int pathArg, bool follow) =>
        Resolve(Get(a.I32(fdArg)), a.String(a.I32(pathArg), a.I32(pathArg + 1)), follow);

    private Errno PathOpen(Args a)
    {
        var dir = Get(a.I32(0));
        var follow = (a.I32(1) & 1) != 0;
        var path = a.String(a.I32(2), a.I32(3));
        int oflags = a.I32(4), fdflags = a.I32(7), outFd = a.I32(8);
        long rights = a.I64(5), inheriting = a.I64(6);
        bool creat = (oflags & 1) != 0, directory = (oflags & 2) != 0, excl = (oflags & 4) != 0, trunc = (oflags & 8) != 0;
        if ((dir.RightsBase & (1L << 13)) == 0 || (trunc && (dir.RightsBase & (1L << 19)) == 0)
            || (creat && (dir.RightsBase & (1L << 10)) == 0))
        {
            return Errno.Notcapable;
        }

        var (host, trailing, _) = Resolve(dir, path, follow);
        if (IsLink(host))
        {
            return creat && excl ? Errno.Exist : directory ? Errno.Notdir : Errno.Loop;
        }

        FileDescriptor entry;
        if (Directory.Exists(host))
        {
            if (creat && excl)
            {
                return Errno.Exist;
            }

            if (trunc || (rights & RightFdWrite) != 0 || (fdflags & 1) != 0)
            {
                return Errno.Isdir;
            }

            entry = new FileDescriptor
            {
                Kind = DescriptorKind.Directory,
                Root = dir.Root,
                Relative = Path.GetRelativePath(dir.Root, host) is "." ? "" : Path.GetRelativePath(dir.Root, host),
                RightsBase = rights & FileDescriptor.RightsDirectory,
                RightsInheriting = inheriting,
            };
        }
        else
        {
            var exists = File.Exists(host);
            if (directory)
            {
                return exists ? Errno.Notdir : Errno.Noent;
            }

            if (exists && trailing)
            {
                return Errno.Notdir;
            }

            if (!exists && !creat)
            {
                return Errno.Noent;
            }

            if (!exists && trailing)
            {
                return Errno.Isdir;
            }

            if (exists && creat && excl)
            {
                return Errno.Exist;
            }

            var write = (rights & RightFdWrite) != 0 || (fdflags & 1) != 0 || trunc;
            var read = (rights & RightFdRead) != 0 || !write;
            var mode = creat && excl ? FileMode.CreateNew
                : creat && trunc ? FileMode.Create
                : creat ? FileMode.OpenOrCreate
                : trunc ? FileMode.Truncate
                : FileMode.Open;
            var access = read && write ? FileAccess.ReadWrite : write ? FileAccess.Write : FileAccess.Read;
            var handle = File.OpenHandle(host, mode, access, FileShare.ReadWrite | FileShare.Delete);
            entry = new FileDescriptor
            {
                Kind = DescriptorKind.File,
                Root = dir.Root,
                Relative = Path.GetRelativePath(dir.Root, host),
                Handle = handle,
                CanRead = read,
                CanWrite = write,
                Flags = (ushort)(fdflags & 0x1F),
                RightsBase = rights & FileDescriptor.RightsFile,
                RightsInheriting = inheriting & FileDescriptor.RightsFile,
            };
        }

        var fd = Allocate(entry);
        a.U32(outFd, fd);
        return Errno.Success;
    }

    private Errno PathCreateDirectory(Args a)
    {
        var (host, _, _) = ResolveArg(a, 0, 1, false);
        if (IsLink(host) || Directory.Exists(host) || File.Exists(host))
        {
            return Errno.Exist;
        }

        Directory.CreateDirectory(host);
        return Errno.Success;
    }

    private Errno PathRemoveDirectory(Args a)
    {
        var (host, _, isRoot) = ResolveArg(a, 0, 1, false);
        if (IsLink(host) || File.Exists(host))
        {
            return Errno.Notdir;
        }

        if (!Directory.Exists(host))
        {
            return Errno.Noent;
        }

        if (isRoot)
        {
            return Errno.Busy;
        }

        if (Directory.EnumerateFileSystemEntries(host).Any())
        {
            return Errno.Notempty;
        }

        Directory.Delete(host, false);
        return Errno.Success;
    }

    private Errno PathUnlinkFile(Args a)
    {
        var (host, trailing, _) = ResolveArg(a, 0, 1, false);
        if (IsLink(host))
        {
            if (trailing)
            {
                return Errno.Notdir;
            }

            File.Delete(host);
            return Errno.Success;
        }

        if (Directory.Exists(host))
        {
            return Errno.Isdir;
        }

        if (!File.Exists(host))
        {
            return Errno.Noent;
        }

        if (trailing)
        {
            return Errno.Notdir;
        }

        File.Delete(host);
        return Errno.Success;
    }

    private Errno PathRename(Args a)
    {
        var (from, fromTrailing, fromRoot) = ResolveArg(a, 0, 1, false);
        var (to, toTrailing, toRoot) = Resolve(Get(a.I32(3)), a.String(a.I32(4), a.I32(5)), false);
        var fromLink = IsLink(from);
        var fromDir = !fromLink && Directory.Exists(from);
        if (!fromLink && !fromDir && !File.Exists(from))
        {
            return Errno.Noent;
        }

        if (fromRoot || toRoot)
        {
            return Errno.Busy;
        }

        var toLink = IsLink(to);
        var toDir = !toLink && Directory.Exists(to);
        var toFile = toLink || File.Exists(to);
        if (fromDir)
        {
            if (toFile)
            {
                return Errno.Notdir;
            }

            if (to.StartsWith(from + Path.DirectorySeparatorChar, StringComparison.Ordinal))
            {
                return Errno.Inval;
            }

            if (toDir)
            {
                if (Directory.EnumerateFileSystemEntries(to).Any())
                {
                    return Errno.Notempty;
                }

                Directory.Delete(to);
            }

            Directory.Move(from, to);
            return Errno.Success;
        }

        if (fromTrailing || toTrailing)
        {
            return Errno.Notdir;
        }

        if (toDir)
        {
            return Errno.Isdir;
        }

        File.Move(from, to, overwrite: true);
        return Errno.Success;
    }

    private Errno PathSymlink(Args a)
    {
        var target = a.String(a.I32(0), a.I32(1));
        var (host, trailing, _) = Resolve(Get(a.I32(2)), a.String(a.I32(3), a.I32(4)), false);
        if (target.StartsWith('/'))
        {
            return Errno.Notcapable;
        }

        if (IsLink(host) || Directory.Exists(host) || File.Exists(host))
        {
            return Errno.Exist;
        }

        if (trailing)
        {
            return Errno.Noent;
        }

        File.CreateSymbolicLink(host, target);
        return Errno.Success;
    }

    private Errno PathReadlink(Args a)
    {
        var (host, _, _) = ResolveArg(a, 0, 1, false);
        var target = LinkTarget(host);
        if (target is null)
        {
            return Directory.Exists(host) || File.Exists(host) ? Errno.Inval : Errno.Noent;
        }

        var bytes = Encoding.UTF8.GetBytes(target);
        var room = a.I32(4);
        var n = Math.Min(bytes.Length, room);
        bytes.AsSpan(0, n).CopyTo(a.Span(a.I32(3), n));
        a.U32(a.I32(5), n);
        return Errno.Success;
    }

    private Errno PathLink(Args a)
    {
        var (from, _, _) = Resolve(Get(a.I32(0)), a.String(a.I32(2), a.I32(3)), (a.I32(1) & 1) != 0);
        var (to, toTrailing, _) = Resolve(Get(a.I32(4)), a.String(a.I32(5), a.I32(6)), false);
        if (IsLink(to) || Directory.Exists(to) || File.Exists(to))
        {
            return Errno.Exist;
        }

        if (Directory.Exists(from) && !IsLink(from))
        {
            return Errno.Perm;
        }

        if (!File.Exists(from) && !IsLink(from))
        {
            return Errno.Noent;
        }

        if (toTrailing)
        {
            return Errno.Noent;
        }

        if (Native.Link(from, to) != 0)
        {
            return Marshal.GetLastPInvokeError() switch
            {
                1 => Errno.Perm,
                17 => Errno.Exist,
                18 => Errno.Xdev,
                _ => Errno.Io,
            };
        }

        return Errno.Success;
    }

    private Errno PathFilestatGet(Args a)
    {
        var (host, trailing, _) = Resolve(Get(a.I32(0)), a.String(a.I32(2), a.I32(3)), (a.I32(1) & 1) != 0);
        if (trailing && File.Exists(host) && !Directory.Exists(host))
        {
            return Errno.Notdir;
        }

        WriteFilestat(a, a.I32(4), host, null);
        return Errno.Success;
    }

    private Errno PathFilestatSetTimes(Args a)
    {
        var (host, _, _) = Resolve(Get(a.I32(0)), a.String(a.I32(2), a.I32(3)), (a.I32(1) & 1) != 0);
        if (!IsLink(host) && !File.Exists(host) && !Directory.Exists(host))
        {
            return Errno.Noent;
        }

        return SetTimes(host, a.I64(4), a.I64(5), a.I32(6));
    }

    private Errno FdReaddir(Args a)
    {
        var entry = Get(a.I32(0));
        int buf = a.I32(1), length = a.I32(2), used = a.I32(4);
        var cookie = a.I64(3);
        if (entry.Kind != DescriptorKind.Directory)
        {
            return Errno.Notdir;
        }

        var host = entry.HostPath;
        var names = new List<string> { ".", ".." };
        names.AddRange(Directory.EnumerateFileSystemEntries(host).Select(Path.GetFileName).OfType<string>().Order(StringComparer.Ordinal));
        var output = a.Span(buf, length);
        var written = 0;
        for (var i = cookie; i < names.Count && written < length; i++)
        {
            var name = Encoding.UTF8.GetBytes(names[(int)i]);
            var full = Path.Combine(host, names[(int)i]);
            var type = IsLink(full) ? FileDescriptor.FileTypeSymbolicLink
                : Directory.Exists(full) ? FileDescriptor.FileTypeDirectory
                : FileDescriptor.FileTypeRegularFile;
            var record = new byte[24 + name.Length];
            BinaryPrimitives.WriteInt64LittleEndian(record, i + 1);
            BinaryPrimitives.WriteInt64LittleEndian(record.AsSpan(8), Native.Stat(full)?[1] ?? Inode(Path.GetFullPath(full)));
            BinaryPrimitives.WriteInt32LittleEndian(record.AsSpan(16), name.Length);
            record[20] = type;
            name.CopyTo(record, 24);
            var n = Math.Min(record.Length, length - written);
            record.AsSpan(0, n).CopyTo(output[written..]);
            written += n;
        }

        a.U32(used, written);
        return Errno.Success;
    }

    private Errno PollOneoff(Args a)
    {
        int input = a.I32(0), output = a.I32(1), count = a.I32(2), neventsPtr = a.I32(3);
        if (count <= 0)
        {
            return Errno.Inval;
        }

        if (count > 4096)
        {
            return Errno.TooBig;
        }

        a.Span(input, count * 48);
        a.Span(output, count * 32);
        var events = new List<(long UserData, Errno Error, byte Type, long NBytes)>();
        long? wakeAt = null;
        var clocks = new List<(long UserData, long Deadline)>();
        var now = MonotonicNanos();
        for (var i = 0; i < count; i++)
        {
            var sub = input + (i * 48);
            var userData = a.ReadU64(sub);
            var tag = a.Span(sub + 8, 1)[0];
            switch (tag)
            {
                case 0:
                    {
                        var id = a.ReadU32(sub + 16);
                        var timeout = a.ReadU64(sub + 24);
                        var absolute = (BinaryPrimitives.ReadUInt16LittleEndian(a.Span(sub + 40, 2)) & 1) != 0;
                        if (id is < 0 or > 3)
                        {
                            events.Add((userData, Errno.Inval, 0, 0));
                            break;
                        }

                        var deadline = absolute
                            ? (id == 0 ? now + (timeout - ((DateTime.UtcNow - DateTime.UnixEpoch).Ticks * 100)) : timeout)
                            : now + timeout;
                        clocks.Add((userData, deadline));
                        wakeAt = wakeAt is { } w ? Math.Min(w, deadline) : deadline;
                        break;
                    }

                case 1:
                case 2:
                    {
                        var fd = a.ReadU32(sub + 16);
                        if (!_fds.TryGetValue(fd, out var entry))
                        {
                            events.Add((userData, Errno.Badf, tag, 0));
                            break;
                        }

                        if (entry.Kind == DescriptorKind.Directory || (tag == 1 && !entry.CanRead) || (tag == 2 && !entry.CanWrite))
                        {
                            events.Add((userData, Errno.Badf, tag, 0));
                            break;
                        }

                        long nbytes = entry.Kind == DescriptorKind.File && tag == 1
                            ? Math.Max(RandomAccess.GetLength(entry.Handle!) - entry.Position, 0)
                            : tag == 1 && entry.Kind == DescriptorKind.Stdin && _config.StandardInput is { CanSeek: true } s
                                ? Math.Max(s.Length - s.Position, 0)
                                : tag == 1 ? 0 : 65536;
                        events.Add((userData, Errno.Success, tag, nbytes));
                        break;
                    }

                default:
                    return Errno.Inval;
            }
        }

        if (events.Count == 0 && wakeAt is { } until)
        {
            // Sleep in short slices so Store.Interrupt (a timeout) also stops a guest that is waiting here.
            var state = a.Store?.State;
            for (var wait = until - MonotonicNanos(); wait > 0; wait = until - MonotonicNanos())
            {
                if (state is not null && Volatile.Read(ref state.Interrupted) != 0)
                {
                    Runtime.Traps.Interrupted();
                }

                Thread.Sleep(TimeSpan.FromTicks(Math.Clamp(wait / 100, 1, TimeSpan.TicksPerMillisecond * 10)));
            }

            var after = MonotonicNanos();
            foreach (var (userData, deadline) in clocks)
            {
                if (deadline <= after)
                {
                    events.Add((userData, Errno.Success, 0, 0));
                }
            }
        }

        for (var i = 0; i < events.Count; i++)
        {
            var e = output + (i * 32);
            a.Span(e, 32).Clear();
            a.U64(e, events[i].UserData);
            BinaryPrimitives.WriteUInt16LittleEndian(a.Span(e + 8, 2), (ushort)events[i].Error);
            a.Span(e + 10, 1)[0] = events[i].Type;
            a.U64(e + 16, events[i].NBytes);
        }

        a.U32(neventsPtr, events.Count);
        return Errno.Success;
    }

    private static long MonotonicNanos() =>
        (long)(System.Diagnostics.Stopwatch.GetTimestamp() * (1e9 / System.Diagnostics.Stopwatch.Frequency));

    private static partial class Native
    {
        public const int AtFdCwd = -100;
        public const int AtSymlinkNoFollow = 0x100;
        public const long UtimeNow = (1L << 30) - 1;
        public const long UtimeOmit = (1L << 30) - 2;

        /// <summary>Linux x64 and arm64 agree on these struct stat offsets (dev, ino, size and the three timespecs).</summary>
        public static bool HasStat => OperatingSystem.IsLinux()
            && RuntimeInformation.ProcessArchitecture is Architecture.X64 or Architecture.Arm64;

        [LibraryImport("libc", EntryPoint = "link", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
        public static partial int Link(string existing, string created);

        [LibraryImport("libc", EntryPoint = "lstat", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
        public static partial int LStat(string path, [Out] byte[] buffer);

        [LibraryImport("libc", EntryPoint = "utimensat", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
        public static partial int UTimeNsAt(int dirfd, string path, [In] long[] times, int flags);

        /// <summary>dev, ino, nlink, size, atim, mtim, ctim of a path (not following a final symlink), or null.</summary>
        public static long[]? Stat(string path)
        {
            if (!HasStat)
            {
                return null;
            }

            var buffer = new byte[256];
            if (LStat(path, buffer) != 0)
            {
                return null;
            }

            var x64 = RuntimeInformation.ProcessArchitecture == Architecture.X64;
            long At(int offset) => BinaryPrimitives.ReadInt64LittleEndian(buffer.AsSpan(offset));
            long Time(int offset) => (At(offset) * 1_000_000_000L) + At(offset + 8);
            var nlink = x64 ? At(16) : BinaryPrimitives.ReadUInt32LittleEndian(buffer.AsSpan(20));
            return [At(0), At(8), nlink, At(48), Time(72), Time(88), Time(104)];
        }
    }
}
