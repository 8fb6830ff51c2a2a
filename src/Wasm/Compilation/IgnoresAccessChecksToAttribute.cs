#pragma warning disable IDE0130 // The runtime recognises this attribute by its full name, so it must live in this namespace.
namespace System.Runtime.CompilerServices;
#pragma warning restore IDE0130

/// <summary>
/// Lets the dynamic assemblies we emit use Propeller.Wasm's internal types (Instance fields, runtime helpers) without
/// making them public. CoreCLR honours it for dynamic assemblies.
/// </summary>
[AttributeUsage(AttributeTargets.Assembly, AllowMultiple = true)]
internal sealed class IgnoresAccessChecksToAttribute(string assemblyName) : Attribute
{
    public string AssemblyName { get; } = assemblyName;
}
