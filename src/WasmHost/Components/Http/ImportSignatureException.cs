namespace Propeller.WasmHost.Components.Http;

/// <summary>
/// A host function was given arguments of another shape than its WIT signature's: the component declared the import
/// with a different type, which Wasmtime does not check for a <c>func_new</c> function (ADR 0015). Thrown before anything
/// is read from the mismatched value; the dispatcher turns it into the guest's trap
/// <c>import &lt;name&gt;: signature mismatch: …</c>.
/// </summary>
internal sealed class ImportSignatureException(string message) : InvalidOperationException(message);
