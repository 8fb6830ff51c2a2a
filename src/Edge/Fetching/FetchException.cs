namespace Propeller.Edge.Fetching;

/// <summary>The binary could not be obtained; the message goes into the task's error result.</summary>
public sealed class FetchException : Exception
{
    public FetchException()
    {
    }

    public FetchException(string message)
        : base(message)
    {
    }

    public FetchException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}
