/* plugin-proxy: rewrites every task's image_url to a registry mirror (the original's plugin-proxy example).
 * The mirror is baked in at build time: -DPROPELLER_REGISTRY_MIRROR='"mirror.corp.com"' (default "mirror.local").
 * "docker.io/library/app:1" -> "mirror.local/library/app:1"; a reference without a registry host ("app:1",
 * "library/app") gets the mirror prepended. */
#include "../plugin.h"

#ifndef PROPELLER_REGISTRY_MIRROR
#define PROPELLER_REGISTRY_MIRROR "mirror.local"
#endif

EXPORT("enrich_task") int64_t enrich_task(const char *req, int32_t len) {
    char image[1024];
    if (!json_string(req, (size_t)len, "image_url", image, sizeof image) || image[0] == 0) return 0; /* no enrichment */
    const char *rest = image;
    const char *slash = strchr(image, '/');
    if (slash) {
        /* The first component is a registry host when it has a dot or a port, or is localhost (Docker's rule). */
        size_t n = (size_t)(slash - image);
        if (memchr(image, '.', n) || memchr(image, ':', n) || (n == 9 && memcmp(image, "localhost", 9) == 0)) rest = slash + 1;
    }
    out_t o = {0};
    char rewritten[1200] = PROPELLER_REGISTRY_MIRROR "/";
    strncat(rewritten, rest, sizeof rewritten - strlen(rewritten) - 1);
    out_str(&o, "{\"image_url\":");
    out_json_string(&o, rewritten);
    out_str(&o, "}");
    return out_finish(&o);
}
