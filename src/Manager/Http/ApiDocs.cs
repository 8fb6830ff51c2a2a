using System.Text.Json.Serialization;
using Microsoft.AspNetCore.OpenApi;
using Microsoft.OpenApi;
using Propeller.Contracts;
using Propeller.Contracts.Json;

namespace Propeller.Manager.Http;

/// <summary>
/// What the OpenAPI document (/openapi/v1.json) cannot infer from the route handlers: they read their bodies and query
/// strings themselves (the original's error texts and Go-style decoding) and answer <see cref="IResult"/>, so each
/// route names its summary, query parameters, request body and answers here. Documentation only: nothing here binds or
/// validates. tests/Manager.Tests/Http/ApiFuzzTests.cs holds the routes to it (every answer's status documented, every
/// JSON answer valid against its schema).
/// </summary>
internal static class ApiDocs
{
    /// <summary>
    /// The schema of a field written through a converter of ours, which the generator cannot see through (it gave
    /// <c>{}</c>, any value, or a <c>format</c> without a type): <see cref="NullAsDefaultConverter{T}"/> writes its
    /// type (state and priority integers, the flags booleans), <see cref="WireTimeConverter"/> an
    /// RFC 3339 string. A nullable field may also be <c>null</c>.
    /// </summary>
    public static OpenApiOptions AddConverterSchemas(this OpenApiOptions options) => options.AddSchemaTransformer((schema, context, _) =>
    {
        var nullable = context.JsonPropertyInfo is { } property && Nullable.GetUnderlyingType(property.PropertyType) is not null;
        // The attribute's type, not JsonPropertyInfo.CustomConverter: on a nullable field that is System.Text.Json's
        // wrapper of ours.
        var converter = context.JsonPropertyInfo?.AttributeProvider?.GetCustomAttributes(typeof(JsonConverterAttribute), inherit: true)
            .OfType<JsonConverterAttribute>().FirstOrDefault()?.ConverterType;
        (JsonSchemaType? Type, string? Format) known = converter switch
        {
            _ when converter == typeof(WireTimeConverter) => (JsonSchemaType.String, "date-time"),
            _ when converter == typeof(NullAsDefaultConverter<int>) => (JsonSchemaType.Integer, "int32"),
            _ when converter == typeof(NullAsDefaultConverter<long>) => (JsonSchemaType.Integer, "int64"),
            _ when converter == typeof(NullAsDefaultConverter<bool>) => (JsonSchemaType.Boolean, null),
            _ => (null, null),
        };
        if (known.Type is { } type && schema is OpenApiSchema target)
        {
            target.Type = nullable ? type | JsonSchemaType.Null : type;
            target.Format = known.Format;
        }

        return Task.CompletedTask;
    });

    /// <summary>The answer of every refusal: <c>{"error": "..."}</c>; and of a failure of ours, which any route may
    /// answer (500 <c>internal error</c>, ApiExceptionHandler).</summary>
    public static RouteHandlerBuilder Refuses(this RouteHandlerBuilder route, params int[] statuses)
    {
        foreach (var status in statuses.Append(StatusCodes.Status500InternalServerError).Distinct())
        {
            route.Produces<ErrorJson>(status);
        }

        return route;
    }

    /// <summary>A query parameter; <paramref name="type"/> and <paramref name="format"/> say what the route accepts.</summary>
    public static RouteHandlerBuilder Query(
        this RouteHandlerBuilder route, string name, string description, JsonSchemaType type = JsonSchemaType.String, string? format = null) =>
        route.AddOpenApiOperationTransformer((operation, _, _) =>
        {
            operation.Parameters ??= [];
            // A parameter the handler binds by name is in the document already (as a string): describe that one.
            var existing = operation.Parameters.OfType<OpenApiParameter>().FirstOrDefault(p => p.In == ParameterLocation.Query && p.Name == name);
            var parameter = existing ?? new OpenApiParameter { Name = name, In = ParameterLocation.Query };
            parameter.Description = description;
            parameter.Schema = new OpenApiSchema { Type = type, Format = format };
            if (existing is null)
            {
                operation.Parameters.Add(parameter);
            }

            return Task.CompletedTask;
        });

    /// <summary>The original's paging: <c>offset</c> (default 0) and <c>limit</c> (default 100).</summary>
    public static RouteHandlerBuilder Paged(this RouteHandlerBuilder route, string limitRange = "default 100") =>
        route.Query("offset", "How many items to skip (default 0).", JsonSchemaType.Integer)
            .Query("limit", $"How many items to return ({limitRange}).", JsonSchemaType.Integer);

    /// <summary>
    /// The request body: <typeparamref name="T"/>'s schema as application/json. Not <c>Accepts&lt;T&gt;</c>,
    /// which also makes routing refuse other content types with a 415, where the handlers answer the original's 400.
    /// A body over the 100 MiB limit is refused with 413 (Kestrel's limit, ApiExceptionHandler).
    /// </summary>
    public static RouteHandlerBuilder Body<T>(this RouteHandlerBuilder route, string description, bool required = true) =>
        route.Produces<ErrorJson>(StatusCodes.Status413PayloadTooLarge).AddOpenApiOperationTransformer(async (operation, context, cancellationToken) =>
        {
            var schema = await context.GetOrCreateSchemaAsync(typeof(T), null, cancellationToken);
            operation.RequestBody = new OpenApiRequestBody
            {
                Description = description,
                Required = required,
                Content = new Dictionary<string, OpenApiMediaType>(StringComparer.Ordinal) { ["application/json"] = new() { Schema = schema } },
            };
        });

    /// <summary>A multipart/form-data body with one file part.</summary>
    public static RouteHandlerBuilder FileBody(this RouteHandlerBuilder route, string part, string description) =>
        route.AddOpenApiOperationTransformer((operation, _, _) =>
        {
            operation.RequestBody = new OpenApiRequestBody
            {
                Description = description,
                Required = true,
                Content = new Dictionary<string, OpenApiMediaType>(StringComparer.Ordinal)
                {
                    ["multipart/form-data"] = new()
                    {
                        Schema = new OpenApiSchema
                        {
                            Type = JsonSchemaType.Object,
                            Required = new HashSet<string>(StringComparer.Ordinal) { part },
                            Properties = new Dictionary<string, IOpenApiSchema>(StringComparer.Ordinal)
                            {
                                [part] = new OpenApiSchema { Type = JsonSchemaType.String, Format = "binary" },
                            },
                        },
                    },
                },
            };
            return Task.CompletedTask;
        });

    /// <summary>A path parameter's description.</summary>
    public static RouteHandlerBuilder Path(this RouteHandlerBuilder route, string name, string description) =>
        route.AddOpenApiOperationTransformer((operation, _, _) =>
        {
            if (operation.Parameters?.OfType<OpenApiParameter>().FirstOrDefault(p => p.In == ParameterLocation.Path && p.Name == name) is { } parameter)
            {
                parameter.Description = description;
            }

            return Task.CompletedTask;
        });
}
