namespace Propeller.Wasm.Wasi;

/// <summary>WASI preview1 errno values (wasi-libc's api.h).</summary>
internal enum Errno
{
    Success = 0,
    TooBig = 1,
    Acces = 2,
    Again = 6,
    Badf = 8,
    Busy = 10,
    Exist = 20,
    Fault = 21,
    Fbig = 22,
    Inval = 28,
    Io = 29,
    Isdir = 31,
    Loop = 32,
    Mfile = 33,
    Mlink = 34,
    Nametoolong = 37,
    Noent = 44,
    Nospc = 51,
    Nosys = 52,
    Notdir = 54,
    Notempty = 55,
    Notsock = 57,
    Notsup = 58,
    Overflow = 61,
    Perm = 63,
    Spipe = 70,
    Xdev = 75,
    Notcapable = 76,
}

/// <summary>Ends a WASI call with an errno; caught by the dispatcher, never seen by the embedder.</summary>
internal sealed class WasiErrorException(Errno errno) : Exception(errno.ToString())
{
    public Errno Errno { get; } = errno;

    public WasiErrorException()
        : this(Errno.Io)
    {
    }

    public WasiErrorException(string message)
        : this(Errno.Io)
    {
        _ = message;
    }

    public WasiErrorException(string message, Exception innerException)
        : this(Errno.Io)
    {
        _ = message;
        _ = innerException;
    }
}
