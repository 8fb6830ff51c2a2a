/* Minimal helpers for Propeller manager plugins in C (docs/plugins.md).
 * Build: clang --target=wasm32-wasi -O2 -nostartfiles -Wl,--no-entry -Wl,--export-dynamic -o NAME.wasm NAME.c
 * The ABI: the host calls plugin_alloc(len), copies the JSON request in, calls the hook with (ptr, len), and reads the
 * answer from the returned i64 (ptr << 32 | len), then frees the answer and the request with plugin_free. */
#ifndef PROPELLER_PLUGIN_H
#define PROPELLER_PLUGIN_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define EXPORT(name) __attribute__((export_name(name)))

EXPORT("plugin_alloc") void *plugin_alloc(int32_t len) { return malloc(len > 0 ? (size_t)len : 1); }

EXPORT("plugin_free") void plugin_free(void *ptr, int32_t len) { (void)len; free(ptr); }

/* A growable output buffer for the answer. */
typedef struct { char *data; size_t len, cap; } out_t;

static void out_raw(out_t *o, const char *s, size_t n) {
    if (o->len + n + 1 > o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 256;
        while (cap < o->len + n + 1) cap *= 2;
        o->data = realloc(o->data, cap);
        o->cap = cap;
    }
    memcpy(o->data + o->len, s, n);
    o->len += n;
}

static void out_str(out_t *o, const char *s) { out_raw(o, s, strlen(s)); }

/* Appends s as a JSON string literal (quotes, escapes). */
static void out_json_string(out_t *o, const char *s) {
    static const char hex[] = "0123456789abcdef";
    out_raw(o, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') { char e[2] = {'\\', (char)c}; out_raw(o, e, 2); }
        else if (c < 0x20) { char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]}; out_raw(o, e, 6); }
        else out_raw(o, (const char *)&c, 1);
    }
    out_raw(o, "\"", 1);
}

/* The packed answer: the host frees it with plugin_free. */
static int64_t out_finish(out_t *o) { return ((int64_t)(uint32_t)(uintptr_t)o->data << 32) | (uint32_t)o->len; }

static int64_t answer(const char *json) {
    out_t o = {0};
    out_str(&o, json);
    return out_finish(&o);
}

/* Finds the first string value of "key" in the request (keys of the host's JSON are unique enough for the fields used
 * here: context.user_id, context.action, task.name, task.image_url, an env key). Copies the unescaped value into out
 * (at most cap-1 bytes); returns 1 when found. */
static int json_string(const char *json, size_t len, const char *key, char *out, size_t cap) {
    size_t klen = strlen(key);
    for (size_t i = 0; i + klen + 3 < len; i++) {
        if (json[i] != '"' || (i > 0 && json[i - 1] == '\\') || memcmp(json + i + 1, key, klen) != 0 || json[i + 1 + klen] != '"') continue;
        size_t j = i + klen + 2;
        while (j < len && (json[j] == ' ' || json[j] == ':')) j++;
        if (j >= len || json[j] != '"') return 0;
        size_t n = 0;
        for (j++; j < len && json[j] != '"'; j++) {
            char c = json[j];
            if (c == '\\' && j + 1 < len) {
                c = json[++j];
                if (c == 'n') c = '\n'; else if (c == 't') c = '\t'; else if (c == 'u') { j += 4; c = '?'; }
            }
            if (n + 1 < cap) out[n++] = c;
        }
        out[n] = 0;
        return 1;
    }
    if (cap) out[0] = 0;
    return 0;
}

#endif
