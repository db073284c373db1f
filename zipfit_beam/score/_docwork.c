/*
 * zipfit_beam.score._docwork -- the per-document work besides compression, in C, GIL released:
 * the contamination guard's tokens, n-gram hashes and index look-ups, and the default token
 * counter.  Results are identical to the Python definitions they replace:
 *
 *   guard    contamination.ContaminationIndex.match(text): tokens = re.findall(r"[^\W_]+",
 *            text.lower()), token hash = contamination.token_hash (a multiply-xorshift
 *            per 8 bytes of the UTF-8, then MurmurHash3's fmix64),
 *            window hash = sum_j h(w_j) P^(n-1-j) mod 2^64 (P = 0x100000001B3), the target that
 *            shares most windows (ties: smallest id) and the number of matching windows.
 *   tokens   tokens.count_regex(text): the number of pieces GPT-2's pre-tokenizer regex
 *            '(?i:[sdmt]|ll|ve|re)| ?[^\W\d_]+| ?\d{1,3}| ?[^\s\w]+|_+|\s+(?!\S)|\s+ cuts text into
 *            (at least 1).
 *
 * Unicode.  Character classes come from Python's own Unicode database through the public
 * Py_UNICODE_IS* macros, the same predicates the re module uses for str patterns (\w = ISALNUM
 * or '_', \d = ISDECIMAL, \s = ISSPACE; (?i:s) also matches U+017F, as re's case folding does).
 *   ASCII documents (the str's own ASCII flag, O(1)): one walk over the text's bytes does both:
 *     the pre-tokenizer's letter and digit pieces are exactly the alphanumeric characters, so the
 *     guard's tokens are the maximal unions of adjacent ones, lowercased A-Z -> a-z on the way.
 *     With SSE2 (every x86-64), a text of up to 1 MiB first gets a bitmap per class (16 bytes
 *     classified per step), and each run of a class ends at a count of trailing zeros.
 *   Other documents: the counter walks the str's code points (1, 2 or 4 bytes each); the guard
 *     walks text.lower(), computed by Python's str.lower() because full lowercasing is not per
 *     character (U+0130 -> "i" + U+0307, final sigma), then encodes each token to UTF-8 for its
 *     hash.  The GIL is taken back for each str.lower() call, which lowercases LOWER_CHARS
 *     characters at a time (cut after an ASCII space, tab, CR or newline, as
 *     contamination.lowered_pieces does; str.lower() allocates 12 bytes per character).
 *
 * Memory.  Nothing per token: window hashes are computed as the tokens stream in (a ring of
 * the last max-n token hashes), and the counter only counts.  A non-ASCII text's UTF-8, when
 * it is scored, is the one the str caches (PyUnicode_AsUTF8AndSize).
 *
 * Token hashes are computed from the text's bytes in place (an ASCII token lowercased on the
 * way): a multiply per 8 bytes and two per token, no table.
 *
 * API
 *   GuardIndex(tables, n_ids)      tables: [(n, hashes, offsets, members)] per n-gram size: the
 *                                  sorted uint64 hashes, uint32 offsets (len m+1) into int32
 *                                  members (the ranks of the target ids sharing each hash)
 *   analyze(texts, index, count)   -> [(tokens, rank, windows)] per str; rank -1: no match;
 *                                  tokens 0 when count is false.  The GIL is released for the
 *                                  whole list (after the str.lower() calls).
 *     kernel=, max_bytes=, chunk_bytes=, chunk_mean=
 *                                  also score each text: ncd.document_score with a Gzip1Targets,
 *                                  an Lz4Targets, a ZstdTargets or an IsalTargets (through its
 *                                  module's capsule, _alignment.h)
 *                                  on the text's UTF-8 (an ASCII str's own bytes; else the UTF-8
 *                                  the str caches), in the same pass:
 *                                  -> [(tokens, rank, windows, score, utf8 size)]; score None when
 *                                  chunk scores are to be averaged (left to Python, whose sum()
 *                                  of floats differs by version) or the kernel leaves the text
 *                                  to Python (lz4: past its 2 GB limit; isal: 4 GB; zstd or
 *                                  isal: an error the library reported).
 *   _pieces, _guard_tokens         testing aids
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "pythread.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "_alignment.h"

#if defined(__GNUC__) || defined(__clang__)
#define INLINE static inline __attribute__((always_inline))
#else
#define INLINE static inline
#endif

/* ------------------------------------------------------------------------------------------ */
/* character classes, from Python's Unicode database                                           */

enum { C_LET = 1, C_DIG = 2, C_SPC = 4, C_UND = 8, C_PUN = 16 };
#define C_ALNUM (C_LET | C_DIG)

static uint8_t ascii_cls[256]; /* every code point below 256: ASCII and the rest of Latin-1 */

/* regex classes: letter [^\W\d_], digit \d, space \s, '_', punctuation [^\s\w] */
static unsigned cls_slow(Py_UCS4 c)
{
    unsigned k = 0;
    int alnum = Py_UNICODE_ISALNUM(c);
    if (alnum) k |= Py_UNICODE_ISDECIMAL(c) ? C_DIG : C_LET;
    if (c == '_') k |= C_UND;
    if (Py_UNICODE_ISSPACE(c)) k |= C_SPC;
    if (!alnum && c != '_' && !(k & C_SPC)) k |= C_PUN;
    if (c == '_') k &= ~(unsigned)C_LET;
    return k;
}

INLINE unsigned cls(Py_UCS4 c) { return c < 256 ? ascii_cls[c] : cls_slow(c); }

/* cls of a code point of a str of this kind (a 1-byte str's are all below 256: no test) */
#define CLS_OF(kind, c) ((kind) == PyUnicode_1BYTE_KIND ? ascii_cls[(c) & 0xffu] : cls(c))

static void init_classes(void)
{
    Py_UCS4 c;
    for (c = 0; c < 256; c++) ascii_cls[c] = (uint8_t)cls_slow(c);
}

INLINE Py_UCS4 rd(int kind, const void *d, size_t i)
{
    return kind == PyUnicode_1BYTE_KIND   ? ((const Py_UCS1 *)d)[i]
           : kind == PyUnicode_2BYTE_KIND ? ((const Py_UCS2 *)d)[i]
                                          : ((const Py_UCS4 *)d)[i];
}

/* (?i:[sdmt]) and (?i:ll|ve|re) after an apostrophe, as re folds case (U+017F folds to s) */
INLINE int contraction1(Py_UCS4 c)
{
    return c == 's' || c == 'S' || c == 0x17F || c == 'd' || c == 'D' || c == 'm' || c == 'M' ||
           c == 't' || c == 'T';
}

INLINE int contraction2(Py_UCS4 a, Py_UCS4 b)
{
    Py_UCS4 la = a | 0x20u, lb = b | 0x20u; /* ASCII letters only: checked below */
    if (a >= 128 || b >= 128 || !(ascii_cls[a] & C_LET) || !(ascii_cls[b] & C_LET)) return 0;
    return (la == 'l' && lb == 'l') || (la == 'v' && lb == 'e') || (la == 'r' && lb == 'e');
}

/* ------------------------------------------------------------------------------------------ */
/* the guard's index (the Python type GuardIndex is below)                                     */

typedef struct {
    int n;            /* n-gram size */
    size_t m;         /* entries */
    uint64_t *hash;   /* sorted ascending */
    uint32_t *off;    /* m + 1 */
    int32_t *member;  /* off[m] */
    unsigned bits;    /* directory: the top bits of a hash -> its first entry */
    uint32_t *dir;    /* (1 << bits) + 1 */
    uint64_t pow_n1;  /* P^(n-1) mod 2^64 */
} size_table;

typedef struct {
    PyObject_HEAD
    int nsizes;
    size_table *sizes;
    Py_ssize_t n_ids;
    int max_n; /* the largest n-gram size */
} GuardIndexObject;

#define POLY_P 0x100000001B3ULL

/* ------------------------------------------------------------------------------------------ */
/* scratch areas: one per concurrent call, kept in a pool                                      */

typedef struct scratch {
    struct scratch *next;
    uint8_t *tb; /* one token's UTF-8 (or lowercased ASCII) bytes */
    size_t tb_cap;
    /* the guard's walk over one document: its windows are hashed as the tokens stream in,
       so only the last max_n token hashes are kept (ring), whatever the document's length */
    const GuardIndexObject *g;
    uint64_t *ring;
    size_t ring_cap; /* a power of two > max_n */
    uint64_t nt;     /* tokens so far */
    uint64_t *hz;    /* per n-gram size: the hash of the current window */
    size_t hz_cap;
    int64_t windows;
    int64_t *counts; /* per target rank: windows shared with the document */
    int32_t *touched;
    size_t ntouched, counts_cap;
    /* testing aids */
    int record; /* REC_PIECES: the counter's piece ends; REC_TOKENS: the guard's tokens */
    uint64_t *tok; /* with record: every token hash of the document */
    size_t ntok, tok_cap;
    int64_t *rec; /* piece ends, or token (start, end) pairs into recb */
    size_t nrec, rec_cap;
    uint8_t *recb;
    size_t nrecb, recb_cap;
    int failed; /* out of memory inside a walk */
    uint64_t *cbm; /* an ASCII text's class bitmaps (class_bitmaps) */
    size_t cbm_cap;
} scratch;

enum { REC_NONE = 0, REC_PIECES = 1, REC_TOKENS = 2 };

static scratch *pool_head = NULL;
static PyThread_type_lock pool_lock = NULL;

static void scratch_free(scratch *s)
{
    if (!s) return;
    free(s->tok);
    free(s->tb);
    free(s->ring);
    free(s->hz);
    free(s->counts);
    free(s->touched);
    free(s->rec);
    free(s->recb);
    free(s->cbm);
    free(s);
}

static scratch *scratch_new(void)
{
    return (scratch *)calloc(1, sizeof(scratch));
}

static scratch *pool_get(void)
{
    scratch *s;
    PyThread_acquire_lock(pool_lock, WAIT_LOCK);
    s = pool_head;
    if (s) pool_head = s->next;
    PyThread_release_lock(pool_lock);
    return s ? s : scratch_new();
}

static void pool_put(scratch *s)
{
    PyThread_acquire_lock(pool_lock, WAIT_LOCK);
    s->next = pool_head;
    pool_head = s;
    PyThread_release_lock(pool_lock);
}

static int grow(void **p, size_t *cap, size_t need, size_t item)
{
    size_t c = *cap ? *cap : 64;
    void *q;
    if (need <= *cap) return 0;
    while (c < need) c *= 2;
    q = realloc(*p, c * item);
    if (!q) return -1;
    *p = q;
    *cap = c;
    return 0;
}

static void record_piece(scratch *s, int64_t end)
{
    if (grow((void **)&s->rec, &s->rec_cap, s->nrec + 1, sizeof(int64_t))) {
        s->failed = 1;
        return;
    }
    s->rec[s->nrec++] = end;
}

/* ------------------------------------------------------------------------------------------ */
/* the guard's windows, hashed as tokens arrive                                                */

/* start a document; -1 out of memory */
static int guard_begin(scratch *s, const GuardIndexObject *g)
{
    size_t ring = 16;
    s->g = g;
    s->nt = 0;
    s->windows = 0;
    s->ntouched = 0;
    if (!g) return 0;
    while (ring <= (size_t)g->max_n) ring *= 2;
    if (ring > s->ring_cap) {
        uint64_t *r = (uint64_t *)realloc(s->ring, ring * sizeof(uint64_t));
        if (!r) return -1;
        s->ring = r;
        s->ring_cap = ring;
    }
    if (grow((void **)&s->hz, &s->hz_cap, (size_t)g->nsizes + 1, sizeof(uint64_t))) return -1;
    memset(s->hz, 0, sizeof(uint64_t) * ((size_t)g->nsizes + 1));
    if ((size_t)g->n_ids + 1 > s->counts_cap) {
        size_t cap = (size_t)g->n_ids + 1;
        int64_t *c = (int64_t *)calloc(cap, sizeof(int64_t));
        int32_t *t2 = (int32_t *)malloc(cap * sizeof(int32_t));
        if (!c || !t2) {
            free(c);
            free(t2);
            return -1;
        }
        free(s->counts);
        free(s->touched);
        s->counts = c; /* all zero; guard_end leaves them zero */
        s->touched = t2;
        s->counts_cap = cap;
    }
    return 0;
}

/* one more token hash: every window that ends with it, of every size, is looked up */
static void guard_feed(scratch *s, uint64_t v)
{
    const GuardIndexObject *g = s->g;
    const size_t mask = s->ring_cap - 1u;
    uint64_t nt;
    int z;
    s->ring[s->nt & mask] = v;
    nt = ++s->nt;
    for (z = 0; z < g->nsizes; z++) {
        const size_table *st = &g->sizes[z];
        const uint64_t n = (uint64_t)st->n;
        uint64_t h;
        size_t slot, e;
        if (nt <= n) { /* the first window is still filling */
            h = s->hz[z] = s->hz[z] * POLY_P + v;
            if (nt < n) continue;
        } else { /* drop the token that leaves the window, take v in */
            h = s->hz[z] = (s->hz[z] - s->ring[(nt - 1u - n) & mask] * st->pow_n1) * POLY_P + v;
        }
        if (st->m == 0) continue;
        slot = (size_t)(h >> (64u - st->bits));
        for (e = st->dir[slot]; e < st->dir[slot + 1]; e++) {
            if (st->hash[e] == h) {
                uint32_t q;
                s->windows++;
                for (q = st->off[e]; q < st->off[e + 1]; q++) {
                    int32_t r = st->member[q];
                    if (s->counts[r]++ == 0) s->touched[s->ntouched++] = r;
                }
                break;
            }
        }
    }
}

/* the document's matching windows; *rank: the target sharing most (ties: smallest rank) */
static int64_t guard_end(scratch *s, int32_t *rank)
{
    size_t t;
    int32_t best = -1;
    int64_t most = 0;
    for (t = 0; t < s->ntouched; t++) {
        int32_t r = s->touched[t];
        if (s->counts[r] > most || (s->counts[r] == most && r < best)) {
            most = s->counts[r];
            best = r;
        }
    }
    for (t = 0; t < s->ntouched; t++) s->counts[s->touched[t]] = 0;
    s->ntouched = 0;
    s->g = NULL;
    *rank = s->windows ? best : -1;
    return s->windows;
}

/* ------------------------------------------------------------------------------------------ */
/* token hashes                                                                                */

/* contamination.token_hash: per 8-byte little-endian word w of the token's UTF-8 (the last one
   zero-padded), h = (h ^ w) * TOKEN_MUL, h ^= h >> 32, from TOKEN_SEED ^ length; then
   MurmurHash3's 64-bit finaliser */
#define TOKEN_SEED 0xcbf29ce484222325ULL
#define TOKEN_MUL 0x9e3779b97f4a7c15ULL
#define ASCII_LOWER 0x2020202020202020ULL /* c | 0x20 lowercases A-Z, keeps a-z and 0-9 */

/* k (1-8) bytes at p as a little-endian word; whole: 8 bytes at p are readable, and all 8 are
   loaded (the caller keeps the k it wants) */
INLINE uint64_t load_word(const uint8_t *p, size_t k, int whole)
{
    uint64_t w = 0;
    if (whole) {
        memcpy(&w, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        w = __builtin_bswap64(w);
#endif
        return w;
    }
    while (k--) w = (w << 8) | p[k];
    return w;
}

/* the hash of p[0:n) (each byte | 0x20 with lower = ASCII_LOWER); readable: bytes readable at p */
INLINE uint64_t token_hash(const uint8_t *p, size_t n, size_t readable, uint64_t lower)
{
    uint64_t h = TOKEN_SEED ^ (uint64_t)n;
    size_t i;
    for (i = 0; i < n; i += 8) {
        size_t k = n - i < 8 ? n - i : 8;
        uint64_t keep = k == 8 ? ~0ULL : (1ULL << (8u * k)) - 1u;
        h = (h ^ ((load_word(p + i, k, i + 8 <= readable) | lower) & keep)) * TOKEN_MUL;
        h ^= h >> 32;
    }
    h = (h ^ (h >> 33)) * 0xff51afd7ed558ccdULL;
    h = (h ^ (h >> 33)) * 0xc4ceb9fe1a85ec53ULL;
    return h ^ (h >> 33);
}

static void push_hashed_token(scratch *s, const uint8_t *p, size_t n, uint64_t v)
{
    if (s->g) guard_feed(s, v);
    if (s->record == REC_TOKENS) {
        if (grow((void **)&s->tok, &s->tok_cap, s->ntok + 1, sizeof(uint64_t)) ||
            grow((void **)&s->recb, &s->recb_cap, s->nrecb + n, 1) ||
            grow((void **)&s->rec, &s->rec_cap, s->nrec + 2, sizeof(int64_t))) {
            s->failed = 1;
            return;
        }
        s->tok[s->ntok++] = v;
        memcpy(s->recb + s->nrecb, p, n);
        s->rec[s->nrec++] = (int64_t)s->nrecb;
        s->nrecb += n;
        s->rec[s->nrec++] = (int64_t)s->nrecb;
    }
}

static void push_token(scratch *s, const uint8_t *p, size_t n)
{
    push_hashed_token(s, p, n, token_hash(p, n, n, 0));
}

/* an ASCII token t[a:e] of a text of end bytes (letters and digits), hashed lowercased; its
   lowercased bytes are only copied out when they are recorded */
static void push_ascii_token(scratch *s, const uint8_t *t, size_t a, size_t e, size_t end)
{
    size_t n = e - a, i;
    uint64_t v = token_hash(t + a, n, end - a, ASCII_LOWER);
    if (s->record != REC_TOKENS) {
        push_hashed_token(s, NULL, n, v);
        return;
    }
    if (grow((void **)&s->tb, &s->tb_cap, n, 1)) {
        s->failed = 1;
        return;
    }
    for (i = 0; i < n; i++) s->tb[i] = (uint8_t)(t[a + i] | 0x20u);
    push_hashed_token(s, s->tb, n, v);
}

/* a token of code points d[a:e] (already lowercased), encoded to UTF-8 */
static void push_ucs_token(scratch *s, int kind, const void *d, size_t a, size_t e)
{
    size_t i, n = 0;
    if (grow((void **)&s->tb, &s->tb_cap, 4 * (e - a), 1)) {
        s->failed = 1;
        return;
    }
    for (i = a; i < e; i++) {
        Py_UCS4 c = rd(kind, d, i);
        uint8_t *o = s->tb + n;
        if (c < 0x80) {
            o[0] = (uint8_t)c;
            n += 1;
        } else if (c < 0x800) {
            o[0] = (uint8_t)(0xC0 | (c >> 6));
            o[1] = (uint8_t)(0x80 | (c & 0x3F));
            n += 2;
        } else if (c < 0x10000) { /* never a surrogate: those are not alphanumeric */
            o[0] = (uint8_t)(0xE0 | (c >> 12));
            o[1] = (uint8_t)(0x80 | ((c >> 6) & 0x3F));
            o[2] = (uint8_t)(0x80 | (c & 0x3F));
            n += 3;
        } else {
            o[0] = (uint8_t)(0xF0 | (c >> 18));
            o[1] = (uint8_t)(0x80 | ((c >> 12) & 0x3F));
            o[2] = (uint8_t)(0x80 | ((c >> 6) & 0x3F));
            o[3] = (uint8_t)(0x80 | (c & 0x3F));
            n += 4;
        }
    }
    push_token(s, s->tb, n);
}

/* ------------------------------------------------------------------------------------------ */
/* class bitmaps: an ASCII text's runs found a word at a time                                  */

/*
 * For an ASCII text of at most bitmap_max bytes, one bitmap per class (C_LET, C_DIG, C_SPC,
 * C_UND, C_PUN, in that order), a bit per byte, so the pre-tokenizer finds the end of a run
 * of one class with a count of trailing zeros instead of a loop per character.  Built 16
 * bytes at a time with SSE2's range compares; other machines keep the loops.  The compares
 * are checked against ascii_cls for every ASCII byte when the module loads (bitmaps_ok), and
 * the tests run the pre-tokenizer both ways (_class_bitmaps).
 */
#if defined(__SSE2__) && !defined(DOCWORK_NO_SIMD)
#include <emmintrin.h>
#define HAVE_CLASS_BITMAPS 1
#endif

#define BM_WORDS(n) (((n) >> 6) + 1) /* words per class: bit n (past the text) always clear */
static size_t bitmap_max = (size_t)1 << 20; /* longer texts: the loops (bounded memory) */
static int bitmaps_ok = 0;

#ifdef HAVE_CLASS_BITMAPS
/* class masks of 16 ASCII bytes: letters, digits, spaces ([\t-\r\x1c-\x1f ]), '_' */
INLINE void classify16(__m128i x, unsigned *let, unsigned *dig, unsigned *spc, unsigned *und)
{
#define IN_RANGE(v, lo, hi) _mm_and_si128(_mm_cmpgt_epi8(v, _mm_set1_epi8((char)((lo) - 1))), \
                                          _mm_cmplt_epi8(v, _mm_set1_epi8((char)((hi) + 1))))
    __m128i low = _mm_or_si128(x, _mm_set1_epi8(0x20));
    __m128i sp = _mm_or_si128(_mm_cmpeq_epi8(x, _mm_set1_epi8(' ')),
                              _mm_or_si128(IN_RANGE(x, 0x09, 0x0d), IN_RANGE(x, 0x1c, 0x1f)));
    *let = (unsigned)_mm_movemask_epi8(IN_RANGE(low, 'a', 'z'));
    *dig = (unsigned)_mm_movemask_epi8(IN_RANGE(x, '0', '9'));
    *spc = (unsigned)_mm_movemask_epi8(sp);
    *und = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(x, _mm_set1_epi8('_')));
#undef IN_RANGE
}

/* the bitmaps of t[0:n) (ASCII) in s->cbm, BM_WORDS(n) words per class; NULL: no memory */
static const uint64_t *class_bitmaps(scratch *s, const uint8_t *t, size_t n)
{
    size_t nw = BM_WORDS(n), w;
    uint64_t *bm;
    if (grow((void **)&s->cbm, &s->cbm_cap, 5 * nw, sizeof(uint64_t))) return NULL;
    bm = s->cbm;
    for (w = 0; w < nw; w++) {
        uint64_t m[4] = {0, 0, 0, 0}, valid;
        size_t base = w << 6, j;
        for (j = 0; j < 64 && base + j < n; j += 16) {
            uint8_t tail[16];
            const uint8_t *p = t + base + j;
            unsigned l, d, sp, u;
            if (base + j + 16 > n) { /* zeros past the end: in no class but C_PUN, masked below */
                memset(tail, 0, sizeof tail);
                memcpy(tail, p, n - base - j);
                p = tail;
            }
            classify16(_mm_loadu_si128((const __m128i *)p), &l, &d, &sp, &u);
            m[0] |= (uint64_t)l << j;
            m[1] |= (uint64_t)d << j;
            m[2] |= (uint64_t)sp << j;
            m[3] |= (uint64_t)u << j;
        }
        valid = n - base >= 64 ? ~(uint64_t)0 : ((uint64_t)1 << (n - base)) - 1u;
        bm[w] = m[0];
        bm[nw + w] = m[1];
        bm[2 * nw + w] = m[2];
        bm[3 * nw + w] = m[3];
        bm[4 * nw + w] = ~(m[0] | m[1] | m[2] | m[3]) & valid;
    }
    return bm;
}

/* whether classify16 agrees with ascii_cls on every ASCII byte */
static int check_bitmaps(void)
{
    uint8_t t[128];
    scratch probe;
    const uint64_t *bm;
    unsigned c, z;
    int ok = 1;
    const unsigned order[5] = {C_LET, C_DIG, C_SPC, C_UND, C_PUN};
    for (c = 0; c < 128; c++) t[c] = (uint8_t)c;
    memset(&probe, 0, sizeof probe);
    bm = class_bitmaps(&probe, t, 128);
    if (!bm) return 0;
    for (c = 0; c < 128; c++)
        for (z = 0; z < 5; z++)
            if (((bm[z * BM_WORDS(128) + (c >> 6)] >> (c & 63)) & 1u) != ((ascii_cls[c] & order[z]) != 0)) ok = 0;
    free(probe.cbm);
    return ok;
}
#endif

/* the first position from `from` (<= the text's length) not in the class of bitmap bm */
INLINE size_t bm_run_end(const uint64_t *bm, size_t from)
{
    size_t w = from >> 6;
    uint64_t x = ~bm[w] & (~(uint64_t)0 << (from & 63));
    while (!x) x = ~bm[++w];
    return (w << 6) + (size_t)__builtin_ctzll(x);
}

/* the class bitmaps of an ASCII text to walk, or NULL for the per-character loops */
static const uint64_t *ascii_bitmaps(scratch *s, const uint8_t *t, size_t n)
{
#ifdef HAVE_CLASS_BITMAPS
    if (bitmaps_ok && n <= bitmap_max) return class_bitmaps(s, t, n);
#else
    (void)s;
    (void)t;
    (void)n;
#endif
    return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* the walks                                                                                   */

/*
 * The pre-tokenizer over code points d[0:n]; returns the number of pieces.  Each branch is the
 * regex's alternative in its order; the first that matches at i gives the piece (re tries
 * alternatives in order and takes the first that matches, not the longest).
 * With spans (ASCII text only), the alphanumeric part of every piece -- exactly the text's
 * alphanumeric characters -- is merged into maximal runs, which are the guard's tokens.
 */
INLINE int64_t pretokenize(scratch *s, int kind, const void *d, size_t n, int spans,
                           const uint64_t *bm)
{
    const size_t nw = BM_WORDS(n);
    size_t i = 0, run_a = 0, run_e = 0;
    int64_t count = 0;
    const uint8_t *t = (const uint8_t *)d;
#define SPAN(a_, e_)                                                                           \
    do {                                                                                        \
        if (spans) {                                                                            \
            if ((a_) == run_e && run_e > run_a) run_e = (e_);                                   \
            else {                                                                              \
                if (run_e > run_a) push_ascii_token(s, t, run_a, run_e, n);                     \
                run_a = (a_);                                                                   \
                run_e = (e_);                                                                   \
            }                                                                                   \
        }                                                                                       \
    } while (0)
#define BM_OF(mask_) ((mask_) == C_LET ? 0 : (mask_) == C_DIG ? 1 : (mask_) == C_SPC ? 2 : (mask_) == C_UND ? 3 : 4)
#define RUN(from_, mask_, out_)                                                                \
    do {                                                                                        \
        size_t q_ = (from_);                                                                    \
        if (bm) q_ = bm_run_end(bm + BM_OF(mask_) * nw, q_);                                    \
        else                                                                                    \
            while (q_ < n && (CLS_OF(kind, rd(kind, d, q_)) & (mask_))) q_++;                   \
        (out_) = q_;                                                                            \
    } while (0)
    while (i < n) {
        Py_UCS4 c = rd(kind, d, i);
        unsigned k = CLS_OF(kind, c), kn = 0;
        size_t e;
        count++;
        if (c == '\'' && i + 1 < n) { /* '(?i:[sdmt]|ll|ve|re) */
            Py_UCS4 c1 = rd(kind, d, i + 1);
            if (contraction1(c1)) {
                SPAN(i + 1, i + 2);
                i += 2;
                goto next;
            }
            if (i + 2 < n && contraction2(c1, rd(kind, d, i + 2))) {
                SPAN(i + 1, i + 3);
                i += 3;
                goto next;
            }
        }
        if (c == ' ' && i + 1 < n) kn = CLS_OF(kind, rd(kind, d, i + 1));
        if (k & C_LET) { /* ' ?[^\W\d_]+' */
            RUN(i + 1, C_LET, e);
            SPAN(i, e);
            i = e;
        } else if (kn & C_LET) {
            RUN(i + 2, C_LET, e);
            SPAN(i + 1, e);
            i = e;
        } else if (k & C_DIG) { /* ' ?\d{1,3}' */
            e = i + 1;
            while (e < n && e < i + 3 && (CLS_OF(kind, rd(kind, d, e)) & C_DIG)) e++;
            SPAN(i, e);
            i = e;
        } else if (kn & C_DIG) {
            e = i + 2;
            while (e < n && e < i + 4 && (CLS_OF(kind, rd(kind, d, e)) & C_DIG)) e++;
            SPAN(i + 1, e);
            i = e;
        } else if (k & C_PUN) { /* ' ?[^\s\w]+' */
            RUN(i + 1, C_PUN, i);
        } else if (kn & C_PUN) {
            RUN(i + 2, C_PUN, i);
        } else if (k & C_UND) { /* '_+' */
            RUN(i + 1, C_UND, i);
        } else if (k & C_SPC) { /* '\s+(?!\S)' else '\s+' */
            RUN(i + 1, C_SPC, e);
            if (e < n && e - i >= 2) e--; /* give back the last space to what follows */
            i = e;
        } else {
            i++; /* unreachable: every character is in one class */
        }
    next:
        if (s->record == REC_PIECES) record_piece(s, (int64_t)i);
    }
    if (spans && run_e > run_a) push_ascii_token(s, t, run_a, run_e, n);
#undef SPAN
#undef RUN
#undef BM_OF
    return count;
}

/* the guard's tokens alone, ASCII text: maximal alphanumeric runs, lowercased */
static void guard_tokens_ascii(scratch *s, const uint8_t *t, size_t n)
{
    size_t i = 0;
    while (i < n) {
        size_t a;
        while (i < n && !(ascii_cls[t[i]] & C_ALNUM)) i++;
        a = i;
        while (i < n && (ascii_cls[t[i]] & C_ALNUM)) i++;
        if (i > a) push_ascii_token(s, t, a, i, n);
    }
}

/* the guard's tokens alone: maximal alphanumeric runs of code points (already lowercased) */
static void guard_tokens_ucs(scratch *s, int kind, const void *d, size_t n)
{
    size_t i = 0;
    while (i < n) {
        size_t a;
        while (i < n && !(cls(rd(kind, d, i)) & C_ALNUM)) i++;
        a = i;
        while (i < n && (cls(rd(kind, d, i)) & C_ALNUM)) i++;
        if (i > a) {
            if (kind == PyUnicode_1BYTE_KIND && rd(kind, d, a) < 128) {
                /* fast when the token is ASCII (already lowercase here) */
                size_t q = a;
                while (q < i && rd(kind, d, q) < 128) q++;
                if (q == i) {
                    push_token(s, (const uint8_t *)d + a, i - a);
                    continue;
                }
            }
            push_ucs_token(s, kind, d, a, i);
        }
    }
}

/* ------------------------------------------------------------------------------------------ */
/* GuardIndex                                                                                  */


static void guard_dealloc(GuardIndexObject *self)
{
    int i;
    for (i = 0; i < self->nsizes; i++) {
        free(self->sizes[i].hash);
        free(self->sizes[i].off);
        free(self->sizes[i].member);
        free(self->sizes[i].dir);
    }
    free(self->sizes);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int copy_buffer(PyObject *o, void **out, size_t item, size_t *count, const char *what)
{
    Py_buffer v;
    if (PyObject_GetBuffer(o, &v, PyBUF_SIMPLE) < 0) return -1;
    if (v.len % (Py_ssize_t)item) {
        PyErr_Format(PyExc_ValueError, "%s: %zd bytes is not a whole number of %zu-byte items",
                     what, v.len, item);
        PyBuffer_Release(&v);
        return -1;
    }
    *count = (size_t)v.len / item;
    *out = malloc(v.len ? (size_t)v.len : 1);
    if (!*out) {
        PyBuffer_Release(&v);
        PyErr_NoMemory();
        return -1;
    }
    memcpy(*out, v.buf, (size_t)v.len);
    PyBuffer_Release(&v);
    return 0;
}

static int guard_init(GuardIndexObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"tables", "n_ids", NULL};
    PyObject *tables, *fast;
    Py_ssize_t n_ids, i;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "On:GuardIndex", kwlist, &tables, &n_ids))
        return -1;
    if (self->sizes) {
        PyErr_SetString(PyExc_RuntimeError, "GuardIndex already initialised");
        return -1;
    }
    if (n_ids < 0 || n_ids > INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "n_ids out of range");
        return -1;
    }
    fast = PySequence_Fast(tables, "tables must be a sequence");
    if (!fast) return -1;
    self->n_ids = n_ids;
    self->sizes = (size_table *)calloc((size_t)PySequence_Fast_GET_SIZE(fast) + 1, sizeof(size_table));
    if (!self->sizes) {
        Py_DECREF(fast);
        PyErr_NoMemory();
        return -1;
    }
    for (i = 0; i < PySequence_Fast_GET_SIZE(fast); i++) {
        size_table *st = &self->sizes[i];
        int n;
        PyObject *hashes, *offsets, *members;
        size_t nh, no, nm, j;
        uint64_t p = 1;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(fast, i), "iOOO;a table is (n, hashes, offsets, members)",
                              &n, &hashes, &offsets, &members))
            goto fail;
        self->nsizes = (int)i + 1; /* free what is copied so far on failure */
        if (n < 1) {
            PyErr_SetString(PyExc_ValueError, "n-gram size must be >= 1");
            goto fail;
        }
        st->n = n;
        if (n > self->max_n) self->max_n = n;
        if (copy_buffer(hashes, (void **)&st->hash, 8, &nh, "hashes") ||
            copy_buffer(offsets, (void **)&st->off, 4, &no, "offsets") ||
            copy_buffer(members, (void **)&st->member, 4, &nm, "members"))
            goto fail;
        st->m = nh;
        if (no != nh + 1 || st->off[0] != 0 || (size_t)st->off[nh] != nm) {
            PyErr_SetString(PyExc_ValueError, "offsets must be m + 1 ascending values from 0 to len(members)");
            goto fail;
        }
        for (j = 0; j < nh; j++) {
            if (j && st->hash[j] <= st->hash[j - 1]) {
                PyErr_SetString(PyExc_ValueError, "hashes must be sorted and distinct");
                goto fail;
            }
            if (st->off[j + 1] < st->off[j]) {
                PyErr_SetString(PyExc_ValueError, "offsets must ascend");
                goto fail;
            }
        }
        for (j = 0; j < nm; j++) {
            if (st->member[j] < 0 || st->member[j] >= n_ids) {
                PyErr_SetString(PyExc_ValueError, "member rank out of range");
                goto fail;
            }
        }
        /* directory over the top bits: about one entry per slot, at most 2^22 slots */
        st->bits = 1;
        while (st->bits < 22 && ((size_t)1 << st->bits) < nh) st->bits++;
        st->dir = (uint32_t *)malloc(sizeof(uint32_t) * (((size_t)1 << st->bits) + 1));
        if (!st->dir) {
            PyErr_NoMemory();
            goto fail;
        }
        {
            size_t slot, e = 0, slots = (size_t)1 << st->bits;
            for (slot = 0; slot <= slots; slot++) {
                while (e < nh && (size_t)(st->hash[e] >> (64u - st->bits)) < slot) e++;
                st->dir[slot] = (uint32_t)e;
            }
        }
        for (j = 1; j < (size_t)n; j++) p *= POLY_P;
        st->pow_n1 = p;
    }
    self->nsizes = (int)PySequence_Fast_GET_SIZE(fast);
    Py_DECREF(fast);
    return 0;
fail:
    Py_DECREF(fast);
    return -1;
}

static PyObject *guard_len(GuardIndexObject *self, void *closure)
{
    size_t total = 0;
    int i;
    (void)closure;
    for (i = 0; i < self->nsizes; i++) total += self->sizes[i].m;
    return PyLong_FromSize_t(total);
}

static PyGetSetDef guard_getset[] = {
    {"entries", (getter)guard_len, NULL, "number of (size, hash) entries", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

static PyTypeObject GuardIndexType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "zipfit_beam.score._docwork.GuardIndex",
    .tp_basicsize = sizeof(GuardIndexObject),
    .tp_dealloc = (destructor)guard_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "GuardIndex(tables, n_ids): the contamination index's n-gram hashes, per size, "
              "as analyze() reads them.",
    .tp_getset = guard_getset,
    .tp_init = (initproc)guard_init,
    .tp_new = PyType_GenericNew,
};

/* ------------------------------------------------------------------------------------------ */
/* analyze                                                                                     */

typedef struct {
    PyObject *text; /* owned reference */
    int kind, ascii;
    const void *data;
    size_t len;
    const uint8_t *utf8; /* the text's UTF-8 (ASCII: its own bytes; else cached in the str) */
    size_t utf8_len;
    int64_t tokens, windows;
    int32_t rank;
    int scored; /* 0: score left to Python (chunks reduced by mean) */
    double score;
} doc;

/* The kernels whose targets type can score here: each module's alignment_fn (its capsule, see
   _alignment.h) and the type it accepts, looked up on first use of that kind. */
typedef struct {
    const char *module, *type_name, *capsule;
    alignment_fn align;
    PyObject *type;
} kernel_kind;

static kernel_kind kernel_kinds[] = {
    {"zipfit_beam.score._gzip1", "Gzip1Targets", "zipfit_beam.score._gzip1." ALIGNMENT_CAPSULE_ATTR, NULL, NULL},
    {"zipfit_beam.score._lz4len", "Lz4Targets", "zipfit_beam.score._lz4len." ALIGNMENT_CAPSULE_ATTR, NULL, NULL},
    /* zstd and isal: the libraries' own code looped in C; one capsule serves both types */
    {"zipfit_beam.score._liblen", "ZstdTargets", "zipfit_beam.score._liblen." ALIGNMENT_CAPSULE_ATTR, NULL, NULL},
    {"zipfit_beam.score._liblen", "IsalTargets", "zipfit_beam.score._liblen." ALIGNMENT_CAPSULE_ATTR, NULL, NULL},
};
#define N_KERNEL_KINDS (sizeof kernel_kinds / sizeof kernel_kinds[0])

typedef struct {
    PyObject *kernel; /* a targets object of a kernel_kinds type, or NULL: no scores */
    alignment_fn align; /* its kind's */
    int64_t max_bytes; /* < 0: none */
    int64_t chunk_bytes; /* <= 0: whole documents */
    int chunk_mean;
} scoring;

/* one alignment: 1 scored, 0 left to Python (ALIGN_NOT_HANDLED), -1 out of memory */
static int align_one(const scoring *sc, const uint8_t *x, size_t len, double *out)
{
    int rc = sc->align(sc->kernel, x, len, out);
    return rc == ALIGN_OK ? 1 : rc == ALIGN_NOT_HANDLED ? 0 : -1;
}

/* ncd.document_score with the C kernel: truncation, near-equal chunks (ncd.split_chunks)
   reduced by max; 1 when scored, 0 when left to Python, -1 out of memory */
static int doc_score(const scoring *sc, const uint8_t *x, size_t len, double *out)
{
    size_t n, size, extra, start = 0, i;
    double best = 0.0;
    if (sc->max_bytes >= 0 && len > (size_t)sc->max_bytes) len = (size_t)sc->max_bytes;
    if (sc->chunk_bytes <= 0 || len <= (size_t)sc->chunk_bytes) return align_one(sc, x, len, out);
    /* Python's sum() of floats is not a plain running sum on every version (3.12+: Neumaier),
       so the mean of chunk scores is left to Python */
    if (sc->chunk_mean) return 0;
    n = (len + (size_t)sc->chunk_bytes - 1) / (size_t)sc->chunk_bytes;
    size = len / n;
    extra = len % n;
    for (i = 0; i < n; i++) {
        size_t end = start + size + (i < extra ? 1 : 0);
        double v;
        int r = align_one(sc, x + start, end - start, &v);
        if (r <= 0) return r;
        if (i == 0 || v > best) best = v; /* max(): the first of equal values */
        start = end;
    }
    *out = best;
    return 1;
}

static int ready(PyObject *o)
{
#if PY_VERSION_HEX < 0x030C0000
    return PyUnicode_READY(o);
#else
    (void)o;
    return 0;
#endif
}

/* Characters lowercased at a time for the guard (contamination.LOWER_CHARS): str.lower() of
   non-ASCII text allocates 12 bytes per character for a moment, so a long text is lowercased
   in pieces, each cut just after an ASCII space, tab, CR or newline at or after that many
   characters (contamination.lowered_pieces: such a character is neither cased nor
   case-ignorable, so no mapping looks across it, and it separates tokens). */
#define LOWER_CHARS ((Py_ssize_t)1 << 20)

INLINE int ascii_space(Py_UCS4 c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/*
 * The guard's tokens of a non-ASCII text: each piece lowercased by Python (the GIL taken
 * back for that, *ts is this thread's state while it is released), then walked here.
 * 0 ok; -1 a Python error (set; the GIL is released again either way).
 */
static int lowered_walk(scratch *s, const doc *d, Py_ssize_t lower_chars, PyThreadState **ts)
{
    Py_ssize_t start = 0, n = (Py_ssize_t)d->len;
    while (start < n && !s->failed) {
        Py_ssize_t end = n;
        PyObject *piece, *low;
        if (start + lower_chars < n) {
            Py_ssize_t q;
            for (q = start + lower_chars; q < n; q++)
                if (ascii_space(rd(d->kind, d->data, (size_t)q))) {
                    end = q + 1;
                    break;
                }
        }
        PyEval_RestoreThread(*ts);
        piece = (start == 0 && end == n) ? (Py_INCREF(d->text), d->text)
                                          : PyUnicode_Substring(d->text, start, end);
        low = piece ? PyObject_CallMethod(piece, "lower", NULL) : NULL;
        Py_XDECREF(piece);
        if (low && (!PyUnicode_Check(low) || ready(low) < 0)) {
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "str.lower() did not return a str");
            Py_CLEAR(low);
        }
        *ts = PyEval_SaveThread();
        if (!low) return -1;
        guard_tokens_ucs(s, PyUnicode_KIND(low), PyUnicode_DATA(low), (size_t)PyUnicode_GET_LENGTH(low));
        PyEval_RestoreThread(*ts);
        Py_DECREF(low);
        *ts = PyEval_SaveThread();
        start = end;
    }
    return 0;
}

/*
 * One document, the GIL released (*ts): its score (with a kernel), its guard match (with g,
 * or with guard set for the testing aid) and its token count (with count).  The ASCII walk
 * serves the counter and the guard at once.  0 ok (s->failed: out of memory); -1 Python error.
 */
static int work_doc(scratch *s, const GuardIndexObject *g, int guard, int count, const scoring *sc,
                    doc *d, Py_ssize_t lower_chars, PyThreadState **ts)
{
    d->tokens = 0;
    d->rank = -1;
    d->windows = 0;
    d->scored = 0;
    if (sc && sc->kernel) {
        int r = doc_score(sc, d->utf8, d->utf8_len, &d->score);
        if (r < 0) {
            s->failed = 1;
            return 0;
        }
        d->scored = r;
    }
    if (guard && guard_begin(s, g) < 0) {
        s->failed = 1;
        return 0;
    }
    if (d->ascii) {
        if (count)
            d->tokens = pretokenize(s, PyUnicode_1BYTE_KIND, d->data, d->len, guard,
                                    ascii_bitmaps(s, (const uint8_t *)d->data, d->len));
        else if (guard) guard_tokens_ascii(s, (const uint8_t *)d->data, d->len);
    } else {
        if (count) d->tokens = pretokenize(s, d->kind, d->data, d->len, 0, NULL);
        if (guard && lowered_walk(s, d, lower_chars, ts) < 0) {
            guard_end(s, &d->rank);
            return -1;
        }
    }
    if (count && d->tokens < 1) d->tokens = 1;
    if (guard) d->windows = guard_end(s, &d->rank);
    return 0;
}

static void docs_release(doc *docs, Py_ssize_t n)
{
    Py_ssize_t i;
    for (i = 0; i < n; i++) Py_XDECREF(docs[i].text);
    free(docs);
}

/* docs from a sequence of str (references taken), with their UTF-8 when asked */
static doc *docs_prepare(PyObject *texts, int want_utf8, Py_ssize_t *count)
{
    PyObject *fast = PySequence_Fast(texts, "texts must be a sequence of str");
    Py_ssize_t i, n;
    doc *docs;
    if (!fast) return NULL;
    n = PySequence_Fast_GET_SIZE(fast);
    docs = (doc *)calloc((size_t)n + 1, sizeof(doc));
    if (!docs) {
        Py_DECREF(fast);
        PyErr_NoMemory();
        return NULL;
    }
    for (i = 0; i < n; i++) {
        PyObject *o = PySequence_Fast_GET_ITEM(fast, i);
        doc *d = &docs[i];
        if (!PyUnicode_Check(o)) {
            PyErr_Format(PyExc_TypeError, "text %zd is not a str", i);
            goto fail;
        }
        Py_INCREF(o);
        d->text = o;
        if (ready(o) < 0) goto fail;
        d->kind = PyUnicode_KIND(o);
        d->data = PyUnicode_DATA(o);
        d->len = (size_t)PyUnicode_GET_LENGTH(o);
        d->ascii = PyUnicode_IS_ASCII(o);
        if (want_utf8) {
            Py_ssize_t size;
            if (d->ascii) {
                d->utf8 = (const uint8_t *)d->data;
                d->utf8_len = d->len;
            } else {
                const char *u = PyUnicode_AsUTF8AndSize(o, &size); /* cached in the str */
                if (!u) goto fail;
                d->utf8 = (const uint8_t *)u;
                d->utf8_len = (size_t)size;
            }
        }
    }
    Py_DECREF(fast);
    *count = n;
    return docs;
fail:
    Py_DECREF(fast);
    docs_release(docs, n);
    return NULL;
}

/* a scratch area back to the pool, without a large token buffer one huge token left */
static void scratch_done(scratch *s)
{
    if (s->tb_cap > ((size_t)1 << 20)) {
        free(s->tb);
        s->tb = NULL;
        s->tb_cap = 0;
    }
    if (s->cbm_cap > ((size_t)1 << 17)) { /* a text over 1.6 MB (bitmap_max raised) */
        free(s->cbm);
        s->cbm = NULL;
        s->cbm_cap = 0;
    }
    s->record = REC_NONE;
    pool_put(s);
}

/* run work_doc over docs with the GIL released; 0 ok, -1 error set */
static int work_all(const GuardIndexObject *g, int guard, int count, const scoring *sc, doc *docs,
                    Py_ssize_t n, Py_ssize_t lower_chars, int record, scratch **keep)
{
    scratch *s = pool_get();
    PyThreadState *ts;
    Py_ssize_t i;
    int rc = 0;
    if (!s) {
        PyErr_NoMemory();
        return -1;
    }
    s->record = record;
    s->failed = 0;
    s->nrec = s->nrecb = s->ntok = 0;
    ts = PyEval_SaveThread();
    for (i = 0; i < n && !s->failed && rc == 0; i++) rc = work_doc(s, g, guard, count, sc, &docs[i], lower_chars, &ts);
    PyEval_RestoreThread(ts);
    if (rc == 0 && s->failed) {
        PyErr_NoMemory();
        rc = -1;
    }
    if (keep && rc == 0) *keep = s; /* the caller reads what was recorded, then scratch_done */
    else scratch_done(s);
    return rc;
}

static int load_kernel_kind(kernel_kind *k)
{
    PyObject *mod, *type;
    alignment_fn align;
    if (k->type) return 0;
    align = (alignment_fn)PyCapsule_Import(k->capsule, 0);
    if (!align) return -1;
    mod = PyImport_ImportModule(k->module);
    if (!mod) return -1;
    type = PyObject_GetAttrString(mod, k->type_name);
    Py_DECREF(mod);
    if (!type || !PyType_Check(type)) {
        Py_XDECREF(type);
        PyErr_Format(PyExc_ImportError, "%s.%s is not a type", k->module, k->type_name);
        return -1;
    }
    if (k->type) { /* loaded meanwhile by another thread (the imports may release the GIL) */
        Py_DECREF(type);
        return 0;
    }
    k->align = align;
    k->type = type;
    return 0;
}

/* the alignment function for a kernel object: its kind chosen by its type's name (so only
   that module is imported), then checked against the real type; NULL with an exception */
static alignment_fn kernel_alignment_for(PyObject *kernel)
{
    const char *name = Py_TYPE(kernel)->tp_name, *dot = strrchr(name, '.');
    size_t i;
    if (dot) name = dot + 1;
    for (i = 0; i < N_KERNEL_KINDS; i++) {
        kernel_kind *k = &kernel_kinds[i];
        if (strcmp(name, k->type_name) != 0) continue;
        if (load_kernel_kind(k) < 0) return NULL;
        if (PyObject_TypeCheck(kernel, (PyTypeObject *)k->type)) return k->align;
    }
    PyErr_SetString(PyExc_TypeError, "kernel must be a zipfit_beam.score._gzip1.Gzip1Targets, "
                                     "a zipfit_beam.score._lz4len.Lz4Targets, a "
                                     "zipfit_beam.score._liblen.ZstdTargets or IsalTargets, or None");
    return NULL;
}

static PyObject *py_analyze(PyObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"texts", "index", "count_tokens", "kernel", "max_bytes", "chunk_bytes",
                             "chunk_mean", "lower_chars", NULL};
    PyObject *texts, *index = Py_None, *kernel = Py_None, *list;
    int count = 1, chunk_mean = 0;
    long long max_bytes = -1, chunk_bytes = 0;
    Py_ssize_t lower_chars = LOWER_CHARS;
    const GuardIndexObject *g = NULL;
    scoring sc = {NULL, NULL, -1, 0, 0};
    Py_ssize_t n, i;
    doc *docs;
    (void)self;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|OpOLLpn:analyze", kwlist, &texts, &index, &count,
                                     &kernel, &max_bytes, &chunk_bytes, &chunk_mean, &lower_chars))
        return NULL;
    if (lower_chars < 1) {
        PyErr_SetString(PyExc_ValueError, "lower_chars must be >= 1");
        return NULL;
    }
    if (index != Py_None) {
        if (!PyObject_TypeCheck(index, &GuardIndexType)) {
            PyErr_SetString(PyExc_TypeError, "index must be a GuardIndex or None");
            return NULL;
        }
        g = (const GuardIndexObject *)index;
        if (!g->sizes) {
            PyErr_SetString(PyExc_RuntimeError, "GuardIndex.__init__ was not called");
            return NULL;
        }
    }
    if (kernel != Py_None) {
        sc.align = kernel_alignment_for(kernel);
        if (!sc.align) return NULL;
        {
            PyObject *nt = PyObject_GetAttrString(kernel, "n"); /* its number of targets */
            Py_ssize_t targets = nt ? PyLong_AsSsize_t(nt) : -1;
            Py_XDECREF(nt);
            if (targets < 1) {
                if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "the kernel has no targets");
                return NULL;
            }
        }
        sc.kernel = kernel;
        sc.max_bytes = max_bytes;
        sc.chunk_bytes = chunk_bytes;
        sc.chunk_mean = chunk_mean;
    }
    docs = docs_prepare(texts, sc.kernel != NULL, &n);
    if (!docs) return NULL;
    if (work_all(g, g != NULL, count, &sc, docs, n, lower_chars, REC_NONE, NULL) < 0) {
        docs_release(docs, n);
        return NULL;
    }
    list = PyList_New(n);
    if (!list) {
        docs_release(docs, n);
        return NULL;
    }
    for (i = 0; i < n; i++) {
        const doc *d = &docs[i];
        PyObject *t;
        if (!sc.kernel)
            t = Py_BuildValue("(LiL)", (long long)d->tokens, (int)d->rank, (long long)d->windows);
        else if (d->scored)
            t = Py_BuildValue("(LiLdn)", (long long)d->tokens, (int)d->rank, (long long)d->windows,
                              d->score, (Py_ssize_t)d->utf8_len);
        else
            t = Py_BuildValue("(LiLOn)", (long long)d->tokens, (int)d->rank, (long long)d->windows,
                              Py_None, (Py_ssize_t)d->utf8_len);
        if (!t) {
            Py_DECREF(list);
            docs_release(docs, n);
            return NULL;
        }
        PyList_SET_ITEM(list, i, t);
    }
    docs_release(docs, n);
    return list;
}

/* ------------------------------------------------------------------------------------------ */
/* testing aids                                                                                */

/* _pieces(text) -> end offsets of the pre-tokenizer's pieces (the counting walk) */
static PyObject *py_pieces(PyObject *self, PyObject *arg)
{
    Py_ssize_t n, i;
    doc *docs;
    scratch *s = NULL;
    PyObject *list = NULL, *one = PyTuple_Pack(1, arg);
    (void)self;
    if (!one) return NULL;
    docs = docs_prepare(one, 0, &n);
    Py_DECREF(one);
    if (!docs) return NULL;
    if (work_all(NULL, 0, 1, NULL, docs, n, LOWER_CHARS, REC_PIECES, &s) == 0) {
        list = PyList_New((Py_ssize_t)s->nrec);
        for (i = 0; list && i < (Py_ssize_t)s->nrec; i++) {
            PyObject *v = PyLong_FromLongLong((long long)s->rec[i]);
            if (!v) {
                Py_CLEAR(list);
                break;
            }
            PyList_SET_ITEM(list, i, v);
        }
        scratch_done(s);
    }
    docs_release(docs, n);
    return list;
}

/* _guard_tokens(text, fused=True, lower_chars=LOWER_CHARS) -> (the guard's tokens as UTF-8
   bytes, their hashes), from the walk analyze() uses (fused: the counting walk, ASCII text) */
static PyObject *py_guard_tokens(PyObject *self, PyObject *args)
{
    PyObject *text, *one, *toks = NULL, *hashes = NULL, *out = NULL;
    int fused = 1;
    Py_ssize_t n, i, lower_chars = LOWER_CHARS;
    doc *docs;
    scratch *s = NULL;
    (void)self;
    if (!PyArg_ParseTuple(args, "U|pn:_guard_tokens", &text, &fused, &lower_chars)) return NULL;
    if (lower_chars < 1) {
        PyErr_SetString(PyExc_ValueError, "lower_chars must be >= 1");
        return NULL;
    }
    one = PyTuple_Pack(1, text);
    if (!one) return NULL;
    docs = docs_prepare(one, 0, &n);
    Py_DECREF(one);
    if (!docs) return NULL;
    if (work_all(NULL, 1, fused, NULL, docs, n, lower_chars, REC_TOKENS, &s) < 0) {
        docs_release(docs, n);
        return NULL;
    }
    toks = PyList_New((Py_ssize_t)s->ntok);
    hashes = PyList_New((Py_ssize_t)s->ntok);
    if (!toks || !hashes) goto done;
    for (i = 0; i < (Py_ssize_t)s->ntok; i++) {
        PyObject *b = PyBytes_FromStringAndSize((const char *)s->recb + s->rec[2 * i],
                                                (Py_ssize_t)(s->rec[2 * i + 1] - s->rec[2 * i]));
        PyObject *h = PyLong_FromUnsignedLongLong((unsigned long long)s->tok[i]);
        if (!b || !h) {
            Py_XDECREF(b);
            Py_XDECREF(h);
            goto done;
        }
        PyList_SET_ITEM(toks, i, b);
        PyList_SET_ITEM(hashes, i, h);
    }
    out = PyTuple_Pack(2, toks, hashes);
done:
    Py_XDECREF(toks);
    Py_XDECREF(hashes);
    scratch_done(s);
    docs_release(docs, n);
    return out;
}

/* _class_bitmaps(max_bytes) -> the previous limit: ASCII texts of at most max_bytes are walked
   with class bitmaps (0: never); None when this build has none */
static PyObject *py_class_bitmaps(PyObject *self, PyObject *arg)
{
    Py_ssize_t v = PyLong_AsSsize_t(arg);
    size_t old = bitmap_max;
    (void)self;
    if (v == -1 && PyErr_Occurred()) return NULL;
    if (v < 0) {
        PyErr_SetString(PyExc_ValueError, "max_bytes must be >= 0");
        return NULL;
    }
    if (!bitmaps_ok) Py_RETURN_NONE;
    bitmap_max = (size_t)v;
    return PyLong_FromSize_t(old);
}

static PyMethodDef module_methods[] = {
    {"analyze", (PyCFunction)(void (*)(void))py_analyze, METH_VARARGS | METH_KEYWORDS,
     "analyze(texts, index=None, count_tokens=True, kernel=None, max_bytes=-1, chunk_bytes=0, "
     "chunk_mean=False, lower_chars=LOWER_CHARS) -> [(tokens, rank, windows)] per text, or with a kernel "
     "[(tokens, rank, windows, score or None, utf8 size)]"},
    {"_class_bitmaps", (PyCFunction)py_class_bitmaps, METH_O,
     "testing aid: _class_bitmaps(max_bytes) -> the previous limit of the bitmap walk, or None without one"},
    {"_pieces", (PyCFunction)py_pieces, METH_O,
     "testing aid: end offsets of the token counter's pieces of a str"},
    {"_guard_tokens", (PyCFunction)py_guard_tokens, METH_VARARGS,
     "testing aid: _guard_tokens(text, fused=True, lower_chars=LOWER_CHARS) -> (tokens as UTF-8 bytes, token hashes)"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "_docwork",
    "Per-document guard and token counting in C (see contamination.py and tokens.py).", -1,
    module_methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__docwork(void)
{
    PyObject *m;
    init_classes();
#ifdef HAVE_CLASS_BITMAPS
    bitmaps_ok = check_bitmaps();
#endif
    if (!pool_lock) pool_lock = PyThread_allocate_lock();
    if (!pool_lock) return PyErr_NoMemory();
    if (PyType_Ready(&GuardIndexType) < 0) return NULL;
    m = PyModule_Create(&moduledef);
    if (!m) return NULL;
    Py_INCREF(&GuardIndexType);
    if (PyModule_AddObject(m, "GuardIndex", (PyObject *)&GuardIndexType) < 0) {
        Py_DECREF(&GuardIndexType);
        Py_DECREF(m);
        return NULL;
    }
    if (PyModule_AddIntConstant(m, "LOWER_CHARS", (long)LOWER_CHARS) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
