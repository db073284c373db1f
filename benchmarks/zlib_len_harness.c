/*
 * Compressed lengths from one zlib (or zlib-ng in compat mode) build, for
 * benchmarks/zlib_versions.py.  Linked statically with that zlib's objects into one shared
 * library whose only exported symbols are the zl_* functions below (a version script hides
 * the rest), so several zlibs and the interpreter's own can live in one process.
 *
 * zl_raw_length does what CPython's zlib.compress(data, level, -15) does: deflateInit2 with
 * windowBits -15, memLevel 8 (DEF_MEM_LEVEL), Z_DEFAULT_STRATEGY; the whole input at once;
 * deflate(Z_FINISH) called until the stream ends, with fresh output space each time; then
 * deflateEnd.  The bytes are counted, not kept.
 */
#include <stdlib.h>
#include <string.h>

#include "zlib.h"

#define ZL_EXPORT __attribute__((visibility("default")))
#define OUT_CHUNK 65536

ZL_EXPORT const char *zl_version(void) { return zlibVersion(); }

/* len(zlib.compress(data, level, -15)); -1 on any zlib error. */
ZL_EXPORT long long zl_raw_length(const unsigned char *data, size_t n, int level) {
    static __thread unsigned char out[OUT_CHUNK];
    z_stream s;
    long long total = 0;
    int rc;
    if (n > 0xFFFFFFFFu) return -1; /* CPython feeds larger inputs in pieces; not modelled */
    memset(&s, 0, sizeof s);
    if (deflateInit2(&s, level, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK) return -1;
    s.next_in = (unsigned char *)data; /* zlib 1.2.11 declares next_in without const */
    s.avail_in = (uInt)n;
    do {
        s.next_out = out;
        s.avail_out = OUT_CHUNK;
        rc = deflate(&s, Z_FINISH);
        if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR) {
            deflateEnd(&s);
            return -1;
        }
        total += OUT_CHUNK - s.avail_out;
    } while (rc != Z_STREAM_END);
    deflateEnd(&s);
    return total;
}

/* out[j] = zl_raw_length(x + ys[j], level) for j < m; returns 0, or -1 on an error. */
ZL_EXPORT int zl_concat_lengths(const unsigned char *x, size_t nx, const unsigned char *const *ys,
                                const size_t *nys, size_t m, int level, long long *out) {
    size_t cap = 0, j;
    unsigned char *buf = NULL;
    for (j = 0; j < m; j++)
        if (nx + nys[j] > cap) cap = nx + nys[j];
    buf = malloc(cap ? cap : 1);
    if (buf == NULL) return -1;
    if (nx) memcpy(buf, x, nx);
    for (j = 0; j < m; j++) {
        if (nys[j]) memcpy(buf + nx, ys[j], nys[j]);
        out[j] = zl_raw_length(buf, nx + nys[j], level);
        if (out[j] < 0) {
            free(buf);
            return -1;
        }
    }
    free(buf);
    return 0;
}
