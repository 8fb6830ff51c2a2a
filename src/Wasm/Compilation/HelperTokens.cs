using System.Reflection;
using System.Reflection.Emit;

namespace Propeller.Wasm.Compilation;

/// <summary>
/// Metadata tokens of the runtime helpers, looked up once per compiled module. ILGenerator.Emit(OpCode, MethodInfo) builds
/// a member reference on every call (about 1 µs each), which dominated compile time; emitting the cached token is free.
/// </summary>
internal sealed class HelperTokens(ModuleBuilder module)
{
    private readonly Dictionary<MethodInfo, (int Token, int Slack)> _methods = [];
    private readonly Dictionary<FieldInfo, int> _fields = [];
    private readonly Dictionary<Type, int> _types = [];
    private readonly Dictionary<string, (int Token, int Slack)> _signatures = new(StringComparer.Ordinal);

    /// <summary>ldfld/stfld/ldflda by token; their stack effect is fixed, so ILGenerator's accounting stays exact.</summary>
    public void EmitField(ILGenerator il, OpCode opcode, FieldInfo field)
    {
        if (!_fields.TryGetValue(field, out var token))
        {
            token = module.GetFieldMetadataToken(field);
            _fields[field] = token;
        }

        il.Emit(opcode, token);
    }

    public void EmitType(ILGenerator il, OpCode opcode, Type type)
    {
        if (!_types.TryGetValue(type, out var token))
        {
            token = module.GetTypeMetadataToken(type);
            _types[type] = token;
        }

        il.Emit(opcode, token);
    }

    /// <summary>calli with a cached signature token (same slack rule as <see cref="EmitCall"/>).</summary>
    public int EmitCalli(ILGenerator il, FuncType type, int slackBudget)
    {
        var parameters = ClrTypes.Parameters(type);
        var returns = ClrTypes.Return(type);
        if (!_signatures.TryGetValue(type.Signature, out var entry))
        {
            var helper = SignatureHelper.GetMethodSigHelper(module, CallingConventions.Standard, returns);
            helper.AddArguments(parameters, null, null);
            entry = (module.GetSignatureMetadataToken(helper), parameters.Length + 1 - (returns == typeof(void) ? 0 : 1));
            _signatures[type.Signature] = entry;
        }

        if (entry.Slack > slackBudget)
        {
            il.EmitCalli(OpCodes.Calli, CallingConventions.Standard, returns, parameters, null);
            return 0;
        }

        il.Emit(OpCodes.Calli, entry.Token);
        return entry.Slack;
    }

    /// <summary>
    /// Emits a call by token. ILGenerator then counts the call as stack-neutral, overestimating max-stack by the call's net
    /// pops (its "slack"); the caller keeps the sum bounded so the 16-bit max-stack field cannot wrap.
    /// </summary>
    public int EmitCall(ILGenerator il, MethodInfo method, int slackBudget)
    {
        if (!_methods.TryGetValue(method, out var entry))
        {
            var slack = method.GetParameters().Length - (method.ReturnType == typeof(void) ? 0 : 1);
            entry = (module.GetMethodMetadataToken(method), Math.Max(slack, 0));
            _methods[method] = entry;
        }

        if (entry.Slack > slackBudget)
        {
            il.Emit(OpCodes.Call, method);
            return 0;
        }

        il.Emit(OpCodes.Call, entry.Token);
        return entry.Slack;
    }
}
