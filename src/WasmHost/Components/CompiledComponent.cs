using Wasmtime.Components;

namespace Propeller.WasmHost.Components;

/// <summary>A compiled component with the types of its exported functions and whether it is an HTTP proxy (spec §2.3).</summary>
public sealed record CompiledComponent(Component Component, IReadOnlyList<WitFunction> Functions, bool IsHttpProxy)
{
    /// <summary>
    /// The function a task's name designates (spec §2.5): <c>iface#func</c> inside that exported instance; a bare name at
    /// the top level first, then in the exported instances in export order. The original scanned the raw binary for
    /// <c>wasi:</c> and <c>elastic:</c> interface names; every exported instance is searched here (docs/compatibility.md).
    /// </summary>
    public WitFunction? Find(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        var hash = name.LastIndexOf('#');
        if (hash >= 0)
        {
            var iface = name[..hash];
            var func = name[(hash + 1)..];
            return Functions.FirstOrDefault(f => f.Interface == iface && f.Name == func);
        }

        return Functions.FirstOrDefault(f => f.Interface is null && f.Name == name)
               ?? Functions.FirstOrDefault(f => f.Name == name);
    }
}
