namespace Propeller.Broker.Tests;

/// <summary>Broker addresses as the settings give them (<see cref="BrokerOptions.WithAddress"/>).</summary>
public sealed class BrokerAddressTests
{
    /// <summary>
    /// Credentials in the address (<c>tcp://user:pass@host</c>, as paho takes them) are used when none are set otherwise,
    /// and never shown: the address is logged without them. Before, they were ignored, and the address was logged with
    /// the password in it.
    /// </summary>
    [Fact]
    public void GivenCredentialsInTheAddress_ThenTheyAreUsedUnlessSet_AndTheLoggedAddressLacksThem()
    {
        var options = new BrokerOptions().WithAddress("tcp://user%40x:p%3Ass@broker:1884");
        (options.Username, options.Password, options.Host, options.Port).ShouldBe(("user@x", "p:ss", "broker", 1884));
        new BrokerOptions { Username = "set", Password = "kept" }.WithAddress("ssl://user:pass@broker").Username.ShouldBe("set");

        BrokerOptions.Redacted("tcp://user:secret@broker:1883").ShouldBe("tcp://broker:1883");
        BrokerOptions.Redacted("ssl://user@broker/x@y").ShouldBe("ssl://broker/x@y");
        BrokerOptions.Redacted("broker:1883").ShouldBe("broker:1883");
        BrokerOptions.Redacted("u:p@broker").ShouldBe("broker");
        BrokerOptions.Redacted("").ShouldBe("");
    }
}
