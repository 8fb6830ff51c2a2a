using Propeller.Edge.Monitoring;

namespace Propeller.Edge.Tests;

/// <summary>SystemSampler against a fake /proc and /sys under a temporary root.</summary>
public sealed class SystemSamplerTests : IDisposable
{
    private readonly DirectoryInfo _root = Directory.CreateTempSubdirectory("proplet-sampler");

    public void Dispose() => _root.Delete(true);

    [Fact]
    public void GivenAFreshSampler_WhenTheSystemCpuIsFirstRead_ThenItIsTheUsageSinceConstruction_NotSinceBoot()
    {
        Write("proc/stat", "cpu  100 0 100 800 0 0 0 0 0 0\ncpu0 100 0 100 800 0 0 0 0 0 0\n"); // 20 % busy since boot
        var sampler = new SystemSampler(_root.FullName);

        sampler.SystemCpuPercent().ShouldBe(0);

        Write("proc/stat", "cpu  150 0 150 900 0 0 0 0 0 0\n");
        sampler.SystemCpuPercent().ShouldBe(50);
    }

    [Fact]
    public void GivenACounterThatWentBack_WhenTheSystemCpuIsRead_ThenItIs0_NotAWrappedDifference()
    {
        Write("proc/stat", "cpu  300 0 100 600 0 0 0 0\n");
        var sampler = new SystemSampler(_root.FullName);
        sampler.SystemCpuPercent();

        Write("proc/stat", "cpu  250 0 100 700 0 0 0 0\n"); // user went back 50, idle on 100
        sampler.SystemCpuPercent().ShouldBe(0);
    }

    [Theory]
    [InlineData("9223372036854771712")] // 0x7FFFFFFFFFFFF000: 4 KiB pages
    [InlineData("9223372036854710272")] // 0x7FFFFFFFFFFF0000: arm64's 64 KiB pages
    public void GivenCgroupV1sNoLimit_WhenTheLimitIsRead_ThenThereIsNone(string value)
    {
        Write("sys/fs/cgroup/memory/memory.limit_in_bytes", value + "\n");

        SystemSampler.ContainerLimitBytes(_root.FullName).ShouldBeNull();
    }

    [Fact]
    public void GivenCgroupV2WithoutANamespace_WhenMemoryIsRead_ThenItIsTheProcesssOwnCgroups()
    {
        Write("proc/self/cgroup", "0::/system.slice/proplet.service\n");
        Write("sys/fs/cgroup/system.slice/proplet.service/memory.max", "536870912\n");
        Write("sys/fs/cgroup/system.slice/proplet.service/memory.current", "1000\n");

        SystemSampler.ContainerLimitBytes(_root.FullName).ShouldBe(536_870_912UL);
        SystemSampler.ContainerUsageBytes(_root.FullName).ShouldBe(1000UL);
    }

    [Fact]
    public void GivenCgroupV2InANamespace_WhenMemoryIsRead_ThenItIsTheMountsRoot()
    {
        Write("proc/self/cgroup", "0::/\n");
        Write("sys/fs/cgroup/memory.max", "max\n");
        Write("sys/fs/cgroup/memory.current", "2000\n");

        SystemSampler.ContainerLimitBytes(_root.FullName).ShouldBeNull();
        SystemSampler.ContainerUsageBytes(_root.FullName).ShouldBe(2000UL);
    }

    [Fact]
    public void GivenACgroupLimitBelowTheMachinesMemory_WhenTotalMemoryIsRead_ThenItIsTheLimit()
    {
        Write("proc/meminfo", "MemTotal:       16318412 kB\nMemFree:         1000000 kB\n");
        SystemSampler.TotalMemoryBytes(_root.FullName).ShouldBe(16_318_412UL * 1024);

        Write("sys/fs/cgroup/memory.max", "1073741824\n");
        SystemSampler.TotalMemoryBytes(_root.FullName).ShouldBe(1UL << 30);
    }

    private void Write(string path, string text)
    {
        var full = Path.Combine(_root.FullName, path);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        File.WriteAllText(full, text);
    }
}
