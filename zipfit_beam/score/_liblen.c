/*
 * zipfit_beam.score._liblen -- zstd and isal lengths from the compressors' own code, looped in C.
 *
 * ncd's zstd and isal lengths are library calls:
 *
 *   zstd  len(zstandard.ZstdCompressor(level=L).compress(b))
 *   isal  len(isal.isal_zlib.compress(b, L, -15)) + 18           (framed like gzip)
 *
 * ZstdTargets(targets, level) and IsalTargets(targets, level) make the same calls from C, one
 * C loop over the targets with the GIL released, no Python object per pair.  No zstd or ISA-L
 * header or library is needed to build this module: the Python wheels of zstandard and isal
 * link those libraries in and export their symbols, so load(kind, path) dlopen()s the module
 * file ncd names (isal: isal_zlib's own module, the very code isal_zlib.compress runs; zstd:
 * the first of zstandard's modules that exports the API) and looks up the few functions below,
 * whose prototypes are declared here from the libraries' documented, stable interfaces.
 * ncd compares the results with the Python calls before using a level (its self-check), and
 * calls the libraries from Python when this module, a symbol or the check is missing.
 *
 * isal: ISA-L's x86-64 code for levels 1 and 2 hashes the stream struct's address in place of
 * input bytes 2-5 (see "ISA-L's stray hash" below), so python-isal's lengths depend, for a few
 * inputs, on where its struct lies.  This loop puts every struct at an address whose stray hash
 * is 0: its lengths are the same in every process and thread.
 *
 * The calls, as the Python bindings make them:
 *
 *   zstd  a context with compressionLevel L, contentSizeFlag 1, checksumFlag 0, dictIDFlag 1
 *         (ZstdCompressor's defaults); per input: reset the session, pledge the input's size,
 *         one ZSTD_compressStream2(ZSTD_e_end) into a buffer of ZSTD_compressBound(size).
 *   isal  isal_deflate_init, then level L, hist_bits 15, gzip_flag 0 (raw deflate: wbits -15),
 *         a level buffer of ISA-L's default size for L, the whole input at once with
 *         end_of_stream 1 and FULL_FLUSH; the output offered as python-isal offers it (16 KiB,
 *         then the buffer doubled whenever it is full: ISA-L's block choices look at the space
 *         left).  ISA-L's stream struct is declared up to its public fields; its internal
 *         state follows, so the struct gets room to spare (ISAL_STREAM_BYTES), and it lives
 *         in a mapping of its own, at an address chosen for ISA-L's stray hash (isal_stream_map).
 *
 * Thread-safety: each call takes a scratch area (zstd's compression context or ISA-L's level
 * buffer, the x + t buffer, the output buffer) from its object's pool for itself, so calls on
 * several threads share nothing mutable; the library tables are written once, by load().
 *
 * Alignment (the contract of _alignment.h): the capsule _alignment_nogil_v1 serves both types
 * (one object layout); _docwork.c calls it in its fused pass.  C(x) is compressed from x
 * itself, each C(x + t) from x copied once and t appended after it.  ALIGN_NOT_HANDLED when a
 * source is past what the library takes in one call (isal: 32-bit sizes) or the library
 * reports an error: Python then scores that document (and raises the library's own error).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "pythread.h"

#include <dlfcn.h>
#include <stddef.h>
#include <sys/mman.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "_alignment.h"

#define KIND_ZSTD 0
#define KIND_ISAL 1

#define ERR_NO_MEMORY (-1)
#define ERR_LIBRARY (-2)

/* ------------------------------------------------------------------------------------------ */
/* zstd: the stable API subset used (zstd.h, "stable API" since 1.4.0)                        */

typedef struct zstd_cctx zstd_cctx; /* ZSTD_CCtx, opaque */
typedef struct {
    const void *src;
    size_t size;
    size_t pos;
} zstd_in; /* ZSTD_inBuffer */
typedef struct {
    void *dst;
    size_t size;
    size_t pos;
} zstd_out; /* ZSTD_outBuffer */

enum {
    ZSTD_P_LEVEL = 100,        /* ZSTD_c_compressionLevel */
    ZSTD_P_CONTENT_SIZE = 200, /* ZSTD_c_contentSizeFlag */
    ZSTD_P_CHECKSUM = 201,     /* ZSTD_c_checksumFlag */
    ZSTD_P_DICT_ID = 202,      /* ZSTD_c_dictIDFlag */
    ZSTD_RESET_SESSION = 1,    /* ZSTD_reset_session_only */
    ZSTD_END = 2               /* ZSTD_e_end */
};

static struct {
    char *path; /* the file the functions come from; NULL: not loaded */
    zstd_cctx *(*create)(void);
    size_t (*release)(zstd_cctx *);
    size_t (*set_parameter)(zstd_cctx *, int, int);
    size_t (*reset)(zstd_cctx *, int);
    size_t (*pledge)(zstd_cctx *, unsigned long long);
    size_t (*compress_stream2)(zstd_cctx *, zstd_out *, zstd_in *, int);
    size_t (*bound)(size_t);
    unsigned (*is_error)(size_t);
    const char *(*error_name)(size_t);
    unsigned (*version)(void);
} zstd;

/* ------------------------------------------------------------------------------------------ */
/* ISA-L: struct isal_zstream's public leading fields (igzip_lib.h), then its internal state  */

typedef struct {
    uint8_t *next_in;
    uint32_t avail_in;
    uint32_t total_in;
    uint8_t *next_out;
    uint32_t avail_out;
    uint32_t total_out;
    void *hufftables;
    uint32_t level;
    uint32_t level_buf_size;
    uint8_t *level_buf;
    uint16_t end_of_stream;
    uint16_t flush;
    uint16_t gzip_flag;
    uint16_t hist_bits;
    /* struct isal_zstate internal_state follows (about 82 KiB in ISA-L 2.32: a 64 KiB + 288
       byte history buffer, a 16 KiB hash head, a few counters; 8-byte aligned) */
} isal_stream_head;

/* the whole struct isal_zstream (82,384 bytes in ISA-L 2.32), with room to spare */
#define ISAL_STREAM_BYTES ((size_t)96 * 1024)
#define ISAL_FULL_FLUSH 2
#define ISAL_GZIP_DEFLATE 0 /* IGZIP_DEFLATE: raw deflate, no header or trailer */
#define ISAL_HIST_BITS 15   /* wbits -15 */
#define ISAL_OUT_START ((size_t)16 * 1024) /* python-isal's DEF_BUF_SIZE */
#define ISAL_MAX_INPUT ((size_t)UINT32_MAX) /* avail_in: one call takes up to 4 GiB - 1 */
#define GZIP_FRAMING 18 /* ncd.GZIP_FRAMING_BYTES */

/* ISA-L's ISAL_DEF_LVLn_DEFAULT (= _LARGE), python-isal's buffer for memLevel 8 (zlib's default):
   the level's hash tables and 4 bytes per intermediate code for 64 Ki of them */
static const uint32_t isal_level_buf_size[4] = {
    0,                                 /* level 0: none needed */
    4096 + 2 * 8192 + 4 * 65536,       /* level 1: 8 Ki hash entries */
    4096 + 2 * 32768 + 4 * 65536,      /* level 2: 32 Ki hash entries (the 32 KiB history) */
    4096 + 16384 + 2 * 32768 + 4 * 65536, /* level 3: + the hash map's 16 KiB */
};

_Static_assert(sizeof(void *) != 8 || offsetof(isal_stream_head, hist_bits) == 62,
               "isal_zstream's public fields take the first 64 bytes on LP64");

static struct {
    char *path;
    void (*init)(void *);
    int (*deflate)(void *);
} isal;

/* ------------------------------------------------------------------------------------------ */
/* ISA-L's stray hash: where the stream struct goes                                           */

/*
 * ISA-L's x86-64 deflate body for levels 1 and 2 (isal_deflate_icf_body_hash_hist_01/02/04,
 * the SSE to AVX2 builds of igzip/igzip_icf_body_h1_gr_bt.asm, 2.32.1 and master; levels 0 and 3
 * run other code, AVX-512 plays no part) starts a stream in .write_first_byte with
 *
 *     shr tmp2, 16 ; compute_hash hash2, tmp2
 *
 * meant to hash the 4 input bytes at position 2, but tmp2 (rcx) was never loaded with the input
 * there: it still holds the stream pointer (rcx = rdi, the argument, at entry).  So position 2 is
 * looked up and entered in slot g = crc32c(0, (uint32_t)(stream >> 16)) & hash_mask instead of
 * its own.  The output depends on that slot -- on the 64 KiB window the struct starts in, nothing
 * else (not its content, the buffers or their alignment) -- for inputs where one of their first
 * three 4-byte strings recurs (a lost or other match near the start).  python-isal keeps its
 * struct on the calling thread's stack, so its lengths can differ between threads and processes.
 *
 * Here every stream struct starts a window w with crc32c(w) & 0x7fff == 0 (ISA-L's hash masks
 * are at most 0x7fff), mapped for it: g = 0 for every input, in every process and thread.  CRC is
 * linear, and low -> crc32c(low) & 0x7fff is a bijection on 15-bit values, so each 2 GiB chunk
 * of addresses (w = chunk << 15 | low) holds exactly one such window; the chunks from 64 GiB up
 * are tried in order (an mmap hint, kept only when the kernel gives that very address).  When
 * none can be had, IsalTargets raises RuntimeError (ncd then calls python-isal) and a pass that
 * needs another scratch area returns ALIGN_NOT_HANDLED (Python scores that document).
 */
#define ISAL_SLOT_BITS 15
#define ISAL_SLOT_MASK ((1u << ISAL_SLOT_BITS) - 1)
#define ISAL_WINDOW_SHIFT 16                     /* the stray hash takes the address >> 16 */
#define ISAL_MAP_BYTES ((size_t)128 * 1024)      /* a struct's mapping: >= ISAL_STREAM_BYTES */
#define ISAL_FIRST_CHUNK 32                      /* 64 GiB: above a non-PIE program's heap */
#define ISAL_CHUNKS_TRIED 1024                   /* up to ~2 TiB */

_Static_assert(ISAL_MAP_BYTES >= ISAL_STREAM_BYTES, "the mapping holds the stream struct");

/* crc32c(0, v) of a 32-bit value, no final inversion: the x86 crc32 instruction's result */
static uint32_t crc32c_u32(uint32_t v)
{
    int k;
    for (k = 0; k < 32; k++) v = (v >> 1) ^ (0x82F63B78u & (0u - (v & 1u)));
    return v;
}

/* the window number, in chunk, whose stray slot is 0 for every hash mask */
static uint64_t isal_window(uint64_t chunk)
{
    uint32_t basis[ISAL_SLOT_BITS], want, v = 0, k;
    int i;
    for (i = 0; i < ISAL_SLOT_BITS; i++) basis[i] = crc32c_u32(1u << i) & ISAL_SLOT_MASK;
    want = crc32c_u32((uint32_t)(chunk << ISAL_SLOT_BITS)) & ISAL_SLOT_MASK;
    /* low in Gray-code order: one basis vector changes per step */
    for (k = 0; v != want && k + 1 < (1u << ISAL_SLOT_BITS); k++) v ^= basis[__builtin_ctz(k + 1)];
    return (chunk << ISAL_SLOT_BITS) | (uint64_t)(k ^ (k >> 1));
}

/* a mapping of ISAL_MAP_BYTES at a window with stray slot 0; NULL when none could be had */
static uint8_t *isal_stream_map(void)
{
#if UINTPTR_MAX > 0xffffffffu && defined(MAP_ANONYMOUS)
    uint64_t chunk;
    int flags = MAP_PRIVATE | MAP_ANONYMOUS;
#ifdef MAP_FIXED_NOREPLACE
    flags |= MAP_FIXED_NOREPLACE; /* Linux 4.17+: fail rather than map elsewhere (older: a hint) */
#endif
    for (chunk = ISAL_FIRST_CHUNK; chunk < ISAL_FIRST_CHUNK + ISAL_CHUNKS_TRIED; chunk++) {
        void *want = (void *)(uintptr_t)(isal_window(chunk) << ISAL_WINDOW_SHIFT);
        void *p = mmap(want, ISAL_MAP_BYTES, PROT_READ | PROT_WRITE, flags, -1, 0);
        if (p == want) return (uint8_t *)p;
        if (p != MAP_FAILED) munmap(p, ISAL_MAP_BYTES);
    }
#endif
    return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* loading                                                                                    */

static const char *const zstd_symbols[] = {
    "ZSTD_createCCtx", "ZSTD_freeCCtx", "ZSTD_CCtx_setParameter", "ZSTD_CCtx_reset",
    "ZSTD_CCtx_setPledgedSrcSize", "ZSTD_compressStream2", "ZSTD_compressBound", "ZSTD_isError",
    "ZSTD_getErrorName", "ZSTD_versionNumber"};
#define N_ZSTD_SYMBOLS (sizeof zstd_symbols / sizeof zstd_symbols[0])
static const char *const isal_symbols[] = {"isal_deflate_init", "isal_deflate"};
#define N_ISAL_SYMBOLS (sizeof isal_symbols / sizeof isal_symbols[0])

static int kind_of(const char *name)
{
    if (strcmp(name, "zstd") == 0) return KIND_ZSTD;
    if (strcmp(name, "isal") == 0) return KIND_ISAL;
    PyErr_Format(PyExc_ValueError, "kind must be 'zstd' or 'isal', got '%s'", name);
    return -1;
}

static char *loaded_path(int kind) { return kind == KIND_ZSTD ? zstd.path : isal.path; }

/*
 * load(kind, path) -> path: dlopen path (a module file of the binding; already loaded by
 * Python, dlopen gives the same object) and take the functions from it or the libraries it
 * links.  Once a kind is loaded it stays as it is (the functions are read without a lock), and
 * later calls return the first path.  OSError when the file cannot be opened or lacks a symbol.
 */
static PyObject *py_load(PyObject *self, PyObject *args)
{
    const char *name, *path;
    const char *const *names;
    void *fns[N_ZSTD_SYMBOLS > N_ISAL_SYMBOLS ? N_ZSTD_SYMBOLS : N_ISAL_SYMBOLS];
    size_t count, i;
    void *handle;
    char *copy;
    int kind;
    (void)self;
    if (!PyArg_ParseTuple(args, "ss:load", &name, &path)) return NULL;
    if ((kind = kind_of(name)) < 0) return NULL;
    if (loaded_path(kind)) return PyUnicode_FromString(loaded_path(kind));
    names = kind == KIND_ZSTD ? zstd_symbols : isal_symbols;
    count = kind == KIND_ZSTD ? N_ZSTD_SYMBOLS : N_ISAL_SYMBOLS;
    handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        const char *why = dlerror();
        PyErr_Format(PyExc_OSError, "cannot open %s: %s", path, why ? why : "unknown error");
        return NULL;
    }
    for (i = 0; i < count; i++) {
        dlerror();
        fns[i] = dlsym(handle, names[i]);
        if (!fns[i]) {
            PyErr_Format(PyExc_OSError, "%s does not export %s", path, names[i]);
            dlclose(handle); /* Python's own reference (if it loaded the file) keeps it loaded */
            return NULL;
        }
    }
    copy = strdup(path);
    if (!copy) {
        dlclose(handle);
        return PyErr_NoMemory();
    }
    /* the handle stays open for the life of the process: the functions are called from it */
    if (kind == KIND_ZSTD) {
        *(void **)&zstd.create = fns[0];
        *(void **)&zstd.release = fns[1];
        *(void **)&zstd.set_parameter = fns[2];
        *(void **)&zstd.reset = fns[3];
        *(void **)&zstd.pledge = fns[4];
        *(void **)&zstd.compress_stream2 = fns[5];
        *(void **)&zstd.bound = fns[6];
        *(void **)&zstd.is_error = fns[7];
        *(void **)&zstd.error_name = fns[8];
        *(void **)&zstd.version = fns[9];
        zstd.path = copy;
    } else {
        *(void **)&isal.init = fns[0];
        *(void **)&isal.deflate = fns[1];
        isal.path = copy;
    }
    return PyUnicode_FromString(copy);
}

static PyObject *py_loaded(PyObject *self, PyObject *arg)
{
    const char *name;
    int kind;
    (void)self;
    if (!PyUnicode_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "kind must be a str");
        return NULL;
    }
    name = PyUnicode_AsUTF8(arg);
    if (!name || (kind = kind_of(name)) < 0) return NULL;
    if (!loaded_path(kind)) Py_RETURN_NONE;
    return PyUnicode_FromString(loaded_path(kind));
}

static PyObject *py_zstd_version(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    if (!zstd.path) Py_RETURN_NONE;
    return PyLong_FromUnsignedLong(zstd.version());
}

/* ------------------------------------------------------------------------------------------ */
/* one scratch area per call in flight                                                         */

typedef struct scratch {
    struct scratch *next;
    uint8_t *cat; /* x + t */
    size_t cat_cap;
    uint8_t *out; /* compressed output (never read) */
    size_t out_cap;
    zstd_cctx *cctx;        /* zstd */
    uint8_t *level_buf;     /* isal */
    uint8_t *isal_stream;   /* isal: its stream struct, mapped by isal_stream_map */
    size_t last_error;      /* zstd: the last error code, for the message */
    int isal_rc;            /* isal: the last error code */
} scratch;

static void scratch_free(scratch *s)
{
    if (!s) return;
    if (s->cctx) zstd.release(s->cctx);
    free(s->level_buf);
    if (s->isal_stream) munmap(s->isal_stream, ISAL_MAP_BYTES);
    free(s->cat);
    free(s->out);
    free(s);
}

/* a scratch area for kind at level; NULL: out of memory, or (*lib_error set) the library
   refused the context or its parameters (zstd), or no stream struct could be mapped (isal) */
static scratch *scratch_new(int kind, int level, int *lib_error)
{
    scratch *s = (scratch *)calloc(1, sizeof(scratch));
    *lib_error = 0;
    if (!s) return NULL;
    if (kind == KIND_ZSTD) {
        s->cctx = zstd.create();
        if (!s->cctx) {
            free(s);
            return NULL;
        }
        if (zstd.is_error(zstd.set_parameter(s->cctx, ZSTD_P_LEVEL, level)) ||
            zstd.is_error(zstd.set_parameter(s->cctx, ZSTD_P_CONTENT_SIZE, 1)) ||
            zstd.is_error(zstd.set_parameter(s->cctx, ZSTD_P_CHECKSUM, 0)) ||
            zstd.is_error(zstd.set_parameter(s->cctx, ZSTD_P_DICT_ID, 1))) {
            *lib_error = 1;
            scratch_free(s);
            return NULL;
        }
    } else {
        size_t lb = isal_level_buf_size[level];
        s->level_buf = (uint8_t *)malloc(lb ? lb : 1); /* python-isal: PyMem_Malloc(size), non-NULL */
        if (!s->level_buf) {
            scratch_free(s);
            return NULL;
        }
        s->isal_stream = isal_stream_map();
        if (!s->isal_stream) {
            *lib_error = 1;
            scratch_free(s);
            return NULL;
        }
    }
    return s;
}

/* grow *buf to at least need bytes, keeping its content; 0 ok, -1 out of memory */
static int reserve(uint8_t **buf, size_t *cap, size_t need)
{
    uint8_t *p;
    if (need <= *cap && *buf) return 0;
    if (need < 64) need = 64;
    p = (uint8_t *)realloc(*buf, need);
    if (!p) return -1;
    *buf = p;
    *cap = need;
    return 0;
}

static const uint8_t empty_input[1] = {0};

/* len(ZstdCompressor(level).compress(p[:n])), as python-zstandard computes it */
static int zstd_length(scratch *s, const uint8_t *p, size_t n, int64_t *len)
{
    size_t cap = zstd.bound(n), r;
    zstd_in in;
    zstd_out out;
    if (zstd.is_error(cap)) {
        s->last_error = cap;
        return ERR_LIBRARY;
    }
    if (reserve(&s->out, &s->out_cap, cap) < 0) return ERR_NO_MEMORY;
    r = zstd.reset(s->cctx, ZSTD_RESET_SESSION);
    if (!zstd.is_error(r)) r = zstd.pledge(s->cctx, (unsigned long long)n);
    if (zstd.is_error(r)) {
        s->last_error = r;
        return ERR_LIBRARY;
    }
    in.src = n ? (const void *)p : (const void *)empty_input;
    in.size = n;
    in.pos = 0;
    out.dst = s->out;
    out.size = cap;
    out.pos = 0;
    r = zstd.compress_stream2(s->cctx, &out, &in, ZSTD_END);
    if (zstd.is_error(r) || r != 0) { /* r > 0: a partial frame (the bound was too small) */
        s->last_error = r;
        return ERR_LIBRARY;
    }
    *len = (int64_t)out.pos;
    return 0;
}

/*
 * len(isal_zlib.compress(p[:n], level, -15)) + 18, as python-isal computes it -- with ISA-L's
 * stray hash in slot 0 (the struct is s->isal_stream; see "ISA-L's stray hash"), where
 * python-isal's slot is wherever its stack lies.
 */
static int isal_length(scratch *s, int level, const uint8_t *p, size_t n, int64_t *len)
{
    isal_stream_head *z = (isal_stream_head *)s->isal_stream; /* isal_deflate_init sets it up */
    size_t length = ISAL_OUT_START, occupied;
    int rc;
    if (n > ISAL_MAX_INPUT) return ERR_LIBRARY;
    if (reserve(&s->out, &s->out_cap, length) < 0) return ERR_NO_MEMORY;
    isal.init(z);
    z->level = (uint32_t)level;
    z->level_buf = s->level_buf;
    z->level_buf_size = isal_level_buf_size[level];
    z->hist_bits = ISAL_HIST_BITS;
    z->gzip_flag = ISAL_GZIP_DEFLATE;
    z->next_in = (uint8_t *)(n ? p : empty_input);
    z->avail_in = (uint32_t)n;
    z->flush = ISAL_FULL_FLUSH;
    z->end_of_stream = 1;
    z->next_out = s->out;
    z->avail_out = (uint32_t)length;
    for (;;) {
        rc = isal.deflate(z);
        if (rc != 0) {
            s->isal_rc = rc;
            return ERR_LIBRARY;
        }
        if (z->avail_out != 0) break;
        /* full: python-isal doubles its buffer and offers the new half */
        occupied = (size_t)(z->next_out - s->out);
        length *= 2;
        if (reserve(&s->out, &s->out_cap, length) < 0) return ERR_NO_MEMORY;
        z->next_out = s->out + occupied;
        z->avail_out = (uint32_t)(length - occupied > UINT32_MAX ? UINT32_MAX : length - occupied);
    }
    *len = (int64_t)(z->next_out - s->out) + GZIP_FRAMING;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* the targets types                                                                           */

typedef struct {
    PyObject_HEAD
    int kind; /* KIND_ZSTD or KIND_ISAL, from the type */
    int level;
    Py_ssize_t n;
    uint8_t *arena;
    size_t *off;
    size_t *len;
    size_t maxlen;
    int64_t *tlen; /* the length of each target alone */
    PyThread_type_lock lock; /* NULL: __init__ not called (or failed) */
    scratch *pool;
} TargetsObject;

static PyTypeObject ZstdTargetsType, IsalTargetsType;

static const char *type_name(const TargetsObject *self)
{
    return self->kind == KIND_ZSTD ? "ZstdTargets" : "IsalTargets";
}

static size_t max_input(int kind) { return kind == KIND_ZSTD ? (size_t)PY_SSIZE_T_MAX : ISAL_MAX_INPUT; }

/* the longest source the C loop takes (sources past it are the library's to refuse or take) */
static size_t max_source(const TargetsObject *self) { return max_input(self->kind) - self->maxlen; }

static int length_of(const TargetsObject *self, scratch *s, const uint8_t *p, size_t n, int64_t *len)
{
    return self->kind == KIND_ZSTD ? zstd_length(s, p, n, len) : isal_length(s, self->level, p, n, len);
}

static void pool_clear(TargetsObject *self)
{
    scratch *s = self->pool;
    while (s) {
        scratch *nx = s->next;
        scratch_free(s);
        s = nx;
    }
    self->pool = NULL;
}

static void targets_dealloc(TargetsObject *self)
{
    pool_clear(self);
    if (self->lock) PyThread_free_lock(self->lock);
    free(self->arena);
    free(self->off);
    free(self->len);
    free(self->tlen);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* a scratch area of this object's, NULL on failure (*lib_error: the library refused) */
static scratch *pool_get(TargetsObject *self, int *lib_error)
{
    scratch *s;
    *lib_error = 0;
    PyThread_acquire_lock(self->lock, WAIT_LOCK);
    s = self->pool;
    if (s) self->pool = s->next;
    PyThread_release_lock(self->lock);
    return s ? s : scratch_new(self->kind, self->level, lib_error);
}

static void pool_put(TargetsObject *self, scratch *s)
{
    PyThread_acquire_lock(self->lock, WAIT_LOCK);
    s->next = self->pool;
    self->pool = s;
    PyThread_release_lock(self->lock);
}

/* sets the Python error for a failed length (ERR_*) */
static void set_error(const TargetsObject *self, const scratch *s, int rc)
{
    if (rc == ERR_NO_MEMORY) {
        PyErr_NoMemory();
    } else if (self->kind == KIND_ZSTD) {
        PyErr_Format(PyExc_RuntimeError, "zstd: %s", s && s->last_error ? zstd.error_name(s->last_error)
                                                                         : "cannot create a compression context");
    } else if (s) {
        PyErr_Format(PyExc_RuntimeError, "isal_deflate returned %d", s->isal_rc);
    } else {
        PyErr_SetString(PyExc_RuntimeError, "isal: no stream struct could be mapped at an address "
                                            "whose stray hash is 0 (see _liblen.c)");
    }
}

static int targets_init_kind(TargetsObject *self, PyObject *args, PyObject *kwds, int kind)
{
    static char *kwlist[] = {"targets", "level", NULL};
    PyObject *seq;
    Py_ssize_t i, n;
    size_t total = 0, maxlen = 0;
    int level, rc = 0, lib_error = 0;
    scratch *s;
    const char *name = kind == KIND_ZSTD ? "ZstdTargets" : "IsalTargets";
    if (!PyArg_ParseTupleAndKeywords(args, kwds, kind == KIND_ZSTD ? "Oi:ZstdTargets" : "Oi:IsalTargets",
                                     kwlist, &seq, &level))
        return -1;
    if (self->lock) {
        PyErr_Format(PyExc_RuntimeError, "%s already initialised", name);
        return -1;
    }
    if (!loaded_path(kind)) {
        PyErr_Format(PyExc_RuntimeError, "%s: call load(%s, path) first", name,
                     kind == KIND_ZSTD ? "'zstd'" : "'isal'");
        return -1;
    }
    if (kind == KIND_ISAL && (level < 0 || level > 3)) {
        PyErr_Format(PyExc_ValueError, "isal level must be between 0 and 3, got %d", level);
        return -1;
    }
    if (copy_targets(seq, max_input(kind) / 2, name, &self->arena, &self->off, &self->len, &n, &total, &maxlen) < 0)
        return -1;
    self->kind = kind;
    self->level = level;
    self->tlen = (int64_t *)malloc(sizeof(int64_t) * (size_t)(n ? n : 1));
    if (!self->tlen) {
        PyErr_NoMemory();
        return -1;
    }
    self->n = n;
    self->maxlen = maxlen;
    s = scratch_new(kind, level, &lib_error);
    if (!s) {
        if (lib_error && kind == KIND_ZSTD)
            PyErr_Format(PyExc_ValueError, "zstd refused level %d", level);
        else if (lib_error)
            set_error(self, NULL, ERR_LIBRARY);
        else
            PyErr_NoMemory();
        return -1;
    }
    Py_BEGIN_ALLOW_THREADS
    for (i = 0; i < n && rc == 0; i++) rc = length_of(self, s, self->arena + self->off[i], self->len[i], &self->tlen[i]);
    Py_END_ALLOW_THREADS
    if (rc != 0) {
        set_error(self, s, rc);
        scratch_free(s);
        return -1;
    }
    self->lock = PyThread_allocate_lock();
    if (!self->lock) {
        scratch_free(s);
        PyErr_NoMemory();
        return -1;
    }
    self->pool = s;
    return 0;
}

static int zstd_targets_init(TargetsObject *self, PyObject *args, PyObject *kwds)
{
    return targets_init_kind(self, args, kwds, KIND_ZSTD);
}

static int isal_targets_init(TargetsObject *self, PyObject *args, PyObject *kwds)
{
    return targets_init_kind(self, args, kwds, KIND_ISAL);
}

/*
 * out[j] = C(x + t_j) for every target (and *cx = C(x) when cx is given), on scratch s.
 * 0 ok, else ERR_*.  No Python object touched: runs without the GIL.
 */
static int concat_all(const TargetsObject *self, scratch *s, const uint8_t *x, size_t L, int64_t *out,
                      int64_t *cx)
{
    Py_ssize_t j;
    int rc;
    if (cx && (rc = length_of(self, s, x, L, cx)) != 0) return rc;
    if (self->n == 0) return 0;
    if (reserve(&s->cat, &s->cat_cap, L + self->maxlen) < 0) return ERR_NO_MEMORY;
    if (L) memcpy(s->cat, x, L);
    for (j = 0; j < self->n; j++) {
        size_t l = self->len[j];
        if (l) memcpy(s->cat + L, self->arena + self->off[j], l);
        if ((rc = length_of(self, s, s->cat, L + l, &out[j])) != 0) return rc;
    }
    return 0;
}

static PyObject *targets_concat_lengths(TargetsObject *self, PyObject *arg)
{
    Py_buffer view;
    scratch *s;
    int64_t *out;
    int rc, lib_error;
    PyObject *list;
    if (!self->lock) {
        PyErr_Format(PyExc_RuntimeError, "%s.__init__ was not called", Py_TYPE(self)->tp_name);
        return NULL;
    }
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    if ((size_t)view.len > max_source(self)) {
        PyBuffer_Release(&view);
        PyErr_Format(PyExc_OverflowError, "source too long for %s", type_name(self));
        return NULL;
    }
    out = (int64_t *)malloc(sizeof(int64_t) * (size_t)(self->n ? self->n : 1));
    s = pool_get(self, &lib_error);
    if (!out || !s) {
        free(out);
        PyBuffer_Release(&view);
        if (s) pool_put(self, s);
        else if (lib_error) set_error(self, NULL, ERR_LIBRARY);
        else PyErr_NoMemory();
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    rc = concat_all(self, s, (const uint8_t *)view.buf, (size_t)view.len, out, NULL);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    if (rc != 0) {
        set_error(self, s, rc);
        pool_put(self, s);
        free(out);
        return NULL;
    }
    pool_put(self, s);
    list = int64_list(out, self->n, 0);
    free(out);
    return list;
}

/*
 * The alignment contract of _alignment.h, for both types.  ALIGN_NOT_HANDLED: a source past
 * max_source, or an error the library reported (Python then makes the call and raises it).
 */
static int alignment_nogil(PyObject *targets, const uint8_t *x, size_t L, double *result)
{
    TargetsObject *self = (TargetsObject *)targets;
    scratch *s;
    int64_t *out, cx = 0;
    int rc, lib_error;
    if (!self->lock || self->n == 0) return ALIGN_NO_TARGETS;
    if (L > max_source(self)) return ALIGN_NOT_HANDLED;
    out = (int64_t *)malloc(sizeof(int64_t) * (size_t)self->n);
    s = pool_get(self, &lib_error);
    if (!out || !s) {
        free(out);
        if (s) pool_put(self, s);
        return lib_error ? ALIGN_NOT_HANDLED : ALIGN_NO_MEMORY;
    }
    rc = concat_all(self, s, x, L, out, &cx);
    pool_put(self, s);
    if (rc == 0) *result = ncd_alignment(cx, self->tlen, out, 0, self->n);
    free(out);
    return rc == 0 ? ALIGN_OK : rc == ERR_NO_MEMORY ? ALIGN_NO_MEMORY : ALIGN_NOT_HANDLED;
}

static PyObject *targets_alignment(TargetsObject *self, PyObject *arg)
{
    Py_buffer view;
    double r = 0.0;
    int rc;
    if (!self->lock) {
        PyErr_Format(PyExc_RuntimeError, "%s.__init__ was not called", Py_TYPE(self)->tp_name);
        return NULL;
    }
    if (self->n == 0) {
        PyErr_SetString(PyExc_ValueError, "alignment needs at least one target");
        return NULL;
    }
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    Py_BEGIN_ALLOW_THREADS
    rc = alignment_nogil((PyObject *)self, (const uint8_t *)view.buf, (size_t)view.len, &r);
    Py_END_ALLOW_THREADS
    if (rc == ALIGN_NOT_HANDLED) {
        if ((size_t)view.len > max_source(self))
            PyErr_Format(PyExc_OverflowError, "source too long for %s", type_name(self));
        else
            PyErr_Format(PyExc_RuntimeError, "the %s library refused the input",
                         self->kind == KIND_ZSTD ? "zstd" : "isal");
        PyBuffer_Release(&view);
        return NULL;
    }
    PyBuffer_Release(&view);
    if (rc != ALIGN_OK) return PyErr_NoMemory();
    return PyFloat_FromDouble(r);
}

static PyObject *targets_lengths(TargetsObject *self, void *closure)
{
    (void)closure;
    if (!self->lock) {
        PyErr_Format(PyExc_RuntimeError, "%s.__init__ was not called", Py_TYPE(self)->tp_name);
        return NULL;
    }
    return int64_list(self->tlen, self->n, 0);
}

static PyObject *targets_n(TargetsObject *self, void *closure)
{
    (void)closure;
    return PyLong_FromSsize_t(self->lock ? self->n : 0);
}

static PyObject *targets_level(TargetsObject *self, void *closure)
{
    (void)closure;
    return PyLong_FromLong(self->level);
}

static PyObject *targets_max_source(TargetsObject *self, void *closure)
{
    (void)closure;
    if (!self->lock) return PyLong_FromLong(0);
    return PyLong_FromSize_t(max_source(self));
}

static PyMethodDef targets_methods[] = {
    {"concat_lengths", (PyCFunction)targets_concat_lengths, METH_O,
     "concat_lengths(source) -> [the compressed length of source + t for every target t]"},
    {"alignment", (PyCFunction)targets_alignment, METH_O,
     "alignment(source) -> 1 - mean NCD(source, t) over the targets, as "
     "ncd.TargetSet.alignment_of_lengths"},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef targets_getset[] = {
    {"n", (getter)targets_n, NULL, "number of targets", NULL},
    {"level", (getter)targets_level, NULL, "the compression level", NULL},
    {"lengths", (getter)targets_lengths, NULL, "the compressed length of every target", NULL},
    {"max_source", (getter)targets_max_source, NULL,
     "the longest source concat_lengths and alignment take (longer: OverflowError)", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

static PyTypeObject ZstdTargetsType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "zipfit_beam.score._liblen.ZstdTargets",
    .tp_basicsize = sizeof(TargetsObject),
    .tp_dealloc = (destructor)targets_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "ZstdTargets(targets, level): a fixed list of byte strings, prepared once; "
              "concat_lengths(source) gives len(zstandard.ZstdCompressor(level=level).compress(source + t)) "
              "for each, computed by the zstd library load('zstd', path) found.",
    .tp_methods = targets_methods,
    .tp_getset = targets_getset,
    .tp_init = (initproc)zstd_targets_init,
    .tp_new = PyType_GenericNew,
};

static PyTypeObject IsalTargetsType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "zipfit_beam.score._liblen.IsalTargets",
    .tp_basicsize = sizeof(TargetsObject),
    .tp_dealloc = (destructor)targets_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "IsalTargets(targets, level): a fixed list of byte strings, prepared once; "
              "concat_lengths(source) gives len(isal_zlib.compress(source + t, level, -15)) + 18 "
              "for each, computed by the ISA-L library load('isal', path) found.",
    .tp_methods = targets_methods,
    .tp_getset = targets_getset,
    .tp_init = (initproc)isal_targets_init,
    .tp_new = PyType_GenericNew,
};

static PyMethodDef module_methods[] = {
    {"load", (PyCFunction)py_load, METH_VARARGS,
     "load(kind, path) -> path: take kind's ('zstd' or 'isal') functions from the shared object "
     "at path (OSError when it cannot be opened or lacks one); once loaded, a kind keeps its "
     "first path"},
    {"loaded", (PyCFunction)py_loaded, METH_O, "loaded(kind) -> the path kind was loaded from, or None"},
    {"zstd_version", (PyCFunction)py_zstd_version, METH_NOARGS,
     "zstd_version() -> ZSTD_versionNumber() of the loaded zstd, or None"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "_liblen",
    "zstd and isal compressed lengths, the libraries' own code called from one C loop per source.",
    -1, module_methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__liblen(void)
{
    PyObject *m, *cap;
    if (PyType_Ready(&ZstdTargetsType) < 0 || PyType_Ready(&IsalTargetsType) < 0) return NULL;
    m = PyModule_Create(&moduledef);
    if (!m) return NULL;
    Py_INCREF(&ZstdTargetsType);
    if (PyModule_AddObject(m, "ZstdTargets", (PyObject *)&ZstdTargetsType) < 0) {
        Py_DECREF(&ZstdTargetsType);
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&IsalTargetsType);
    if (PyModule_AddObject(m, "IsalTargets", (PyObject *)&IsalTargetsType) < 0) {
        Py_DECREF(&IsalTargetsType);
        Py_DECREF(m);
        return NULL;
    }
    if (PyModule_AddIntConstant(m, "ISAL_STREAM_BYTES", (long)ISAL_STREAM_BYTES) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    /* alignment_fn over a ZstdTargets or an IsalTargets (_alignment.h) */
    cap = PyCapsule_New((void *)alignment_nogil, "zipfit_beam.score._liblen." ALIGNMENT_CAPSULE_ATTR, NULL);
    if (!cap || PyModule_AddObject(m, ALIGNMENT_CAPSULE_ATTR, cap) < 0) {
        Py_XDECREF(cap);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
