using Microsoft.Win32.SafeHandles;

namespace Propeller.Wasm.Wasi;

internal enum DescriptorKind
{
    Stdin,
    Stdout,
    Stderr,
    Directory,
    File,
}

/// <summary>One entry of a context's descriptor table. Directories are a preopen root plus a path inside it.</summary>
internal sealed class FileDescriptor
{
    public const byte FileTypeCharacterDevice = 2;
    public const byte FileTypeDirectory = 3;
    public const byte FileTypeRegularFile = 4;
    public const byte FileTypeSymbolicLink = 7;

    public const long RightsAll = (1L << 30) - 1;

    /// <summary>Rights meaningful for a regular file: fd_* data, seek, tell, advise, allocate, filestat, poll.</summary>
    public const long RightsFile = 0x1FF | (1L << 21) | (1L << 22) | (1L << 23) | (1L << 27);

    /// <summary>Rights meaningful for a directory: the path_* family, readdir, fdstat flags, filestat get/set times.</summary>
    public const long RightsDirectory = (1L << 3) | (0x7FL << 9) | (1L << 16) | (1L << 17) | (1L << 18) | (1L << 19)
        | (1L << 20) | (1L << 21) | (1L << 23) | (1L << 24) | (1L << 25) | (1L << 26) | (1L << 14) | (1L << 15);

    public required DescriptorKind Kind { get; init; }

    /// <summary>Host root of the preopen this descriptor lives in (directories and files).</summary>
    public string Root { get; init; } = "";

    /// <summary>Path below <see cref="Root"/>, '/'-separated, empty for the root itself.</summary>
    public string Relative { get; init; } = "";

    /// <summary>Guest name of a preopen (only for the preopened directories themselves).</summary>
    public string? PreopenName { get; init; }

    public SafeFileHandle? Handle { get; set; }

    public bool CanRead { get; init; }

    public bool CanWrite { get; init; }

    public long Position { get; set; }

    public ushort Flags { get; set; }

    public long RightsBase { get; set; } = RightsAll;

    public long RightsInheriting { get; set; } = RightsAll;

    public string HostPath => Relative.Length == 0 ? Root : Path.Combine(Root, Relative);

    public bool Append => (Flags & 1) != 0;
}
