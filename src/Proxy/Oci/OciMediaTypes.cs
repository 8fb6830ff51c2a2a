namespace Propeller.Proxy.Oci;

/// <summary>Media types of the OCI image spec, Docker's distribution manifests, and Wasm artefacts.</summary>
public static class OciMediaTypes
{
    public const string ImageManifest = "application/vnd.oci.image.manifest.v1+json";
    public const string ImageIndex = "application/vnd.oci.image.index.v1+json";
    public const string DockerManifest = "application/vnd.docker.distribution.manifest.v2+json";
    public const string DockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json";

    /// <summary>The Wasm layer of <c>wasm-to-oci</c> and the CNCF Wasm OCI artefact layout.</summary>
    public const string WasmLayer = "application/vnd.wasm.content.layer.v1+wasm";

    public const string Wasm = "application/wasm";

    /// <summary>The older <c>application/vnd.module.wasm.content.layer.v1+wasm</c> (solo.io's wasm images).</summary>
    public const string WasmModuleLayer = "application/vnd.module.wasm.content.layer.v1+wasm";

    public const string WasmConfig = "application/vnd.wasm.config.v0+json";

    /// <summary>What a manifest request accepts.</summary>
    public static readonly string[] Manifests = [ImageManifest, ImageIndex, DockerManifest, DockerManifestList];

    public static bool IsWasm(string? mediaType) => mediaType is Wasm or WasmLayer or WasmModuleLayer;

    public static bool IsIndex(string? mediaType) => mediaType is ImageIndex or DockerManifestList;
}
