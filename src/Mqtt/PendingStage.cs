namespace Propeller.Mqtt;

/// <summary>What an outstanding packet identifier waits for.</summary>
internal enum PendingStage
{
    AwaitPubAck,
    AwaitPubRec,
    AwaitPubComp,
    AwaitSubAck,
    AwaitUnsubAck,
}
