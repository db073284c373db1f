/*
 * zipfit_beam.score._lz4len -- exact LZ4 frame lengths, computed without compressing.
 *
 * lz4_length(data) == len(lz4.frame.compress(data, compression_level=0)) with python-lz4's
 * default frame settings, for the LZ4 1.9.4 library python-lz4 4.x bundles.  The call is
 * LZ4F_compressFrame with: contentSize = len(data) (so the 8-byte size field is present unless
 * the input is empty), no checksums, no dictionary, block size 64 KiB (the default), blocks
 * linked, autoFlush.  What that produces, and what this module counts:
 *
 *   frame     4-byte magic, FLG, BD, [8-byte content size when len > 0], header checksum;
 *             then the blocks; then a 4-byte end mark.  Empty input: 7 + 4 = 11 bytes.
 *   blocks    a 4-byte block header each.  An input of at most 64 KiB is one block, and
 *             LZ4F then compresses it as an *independent* block; longer inputs are cut in
 *             64 KiB blocks (the last one shorter), compressed *linked*: each block may copy
 *             from everything before it (up to 65535 bytes back).
 *   stored    every block is compressed into a buffer of (block size - 1) bytes; when that
 *             fails (the compressor's conservative overflow checks) the block is stored raw.
 *
 * The block compressor is LZ4's fast one at acceleration 1 (levels 0, 1 and 2 are all this).
 * Re-implemented here from its description, counting output bytes instead of writing them:
 *
 *   table     one-entry-per-hash table of positions.  Independent single block ("byU16"):
 *             8192 16-bit entries, hash of 4 bytes, (read32 * 2654435761) >> 19.  Linked
 *             blocks ("byU32"): 4096 32-bit entries, hash of 5 bytes,
 *             ((read64 << 24) * 889523592379) >> 52, and candidates more than 65535 back are
 *             rejected.  The table starts zeroed, so an empty slot names position 0.
 *   search    from a start position: look up the hash of the current position, store the
 *             position, compare 4 bytes with the candidate; step 1 for 64 probes, then 2 for
 *             the next 64, and so on (step = probes >> 6).  The search ends the block (all
 *             the rest literals) when the next probe would lie past end - 11 (MFLIMIT 12).
 *   match     extend backwards over equal bytes (not before the current literal run, not
 *             before position 1), then forwards up to end - 5 (LASTLITERALS).  Output: token,
 *             literal-length bytes, literals, 2-byte offset, match-length bytes.  Then, unless
 *             the match ended at or after end - 11: store position end-2, look up the match
 *             end itself and, on a 4-byte hit, start another match with no literals;
 *             otherwise search again from the next byte.
 *   blocks    < 13 bytes: all literals.  Every other block first stores its first position.
 *   overflow  the checks of LZ4's limitedOutput mode, against olimit = block size - 1:
 *               before literals  out + lit + 8 + lit/255 > olimit       (out counts the token)
 *               after a match    out + 6 + (mlen-4+240)/255 > olimit    (out counts the offset)
 *               last literals    the final size > olimit
 *             any failing check stops the block there (it is stored); for linked blocks the
 *             table keeps what was stored before the stop, as the library's does.
 *
 * Reuse across targets (Lz4Targets.concat_lengths)
 *   For source x (L bytes) and target y, only the block holding x's end depends on y.  The
 *   block engine below is resumable: it runs over x alone and pauses at the first decision
 *   that could differ for some y: a probe past L - 11 (the end test), a forward match
 *   extension that reaches L - 5 (it may continue into y), a match ending at or after L - 11,
 *   or a block of x shorter than 13 bytes.  Each target copies y after x, restores the paused
 *   state, runs to the end with the real length, then undoes its table writes from a log.
 *   Blocks wholly inside x (linked mode, x > 64 KiB) are compressed once.  Two pauses are
 *   prepared per source when needed: byU16 for targets with L + |y| <= 64 KiB, byU32 (linked)
 *   for the others.
 *   The overflow checks while x alone runs use olimit 65535, the largest any target can have.
 *   That is exact: a block that is not the frame's last has exactly that olimit; for the last
 *   one, the final size is at least the left side of every earlier check (each reserves no
 *   more than the bytes that must still follow: offset, token, >= 5 last literals), so an
 *   earlier check can fail only if the final one fails too, and the block is stored either
 *   way.  Where a non-last block stops matters (its table keeps only what came before).
 *
 * Alignment (Lz4Targets.alignment, and the capsule _alignment_nogil_v1 that _docwork.c calls with
 *   the GIL released): 1 - mean_j NCD(x, t_j) from C(x), the targets' own lengths (computed once)
 *   and every C(x + t_j), as ncd.TargetSet.alignment_of_lengths computes it.  C(x) is one more
 *   continuation, with an empty target, of the same paused state.
 *
 * Limits: inputs up to MAX_INPUT bytes (positions are 32-bit; the library renormalises its
 * indices past 2 GB).  Little-endian only (the library's hashes read native words).
 * Independent implementation written from the LZ4 block and frame format and the fast
 * compressor's algorithm; no LZ4 code.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "pythread.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "_alignment.h"

#if defined(__BYTE_ORDER__) && (__BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__)
#error "_lz4len reproduces LZ4's little-endian hashing only"
#endif

#define BLOCK 65536u
#define MINMATCH 4u
#define MFLIMIT 12u
#define LASTLIT 5u
#define MINLEN (MFLIMIT + 1u)
#define SKIP_TRIGGER 6u
#define MAXDIST 65535u
#define H16_BITS 13u
#define H32_BITS 12u
#define H16_SIZE (1u << H16_BITS)
#define H32_SIZE (1u << H32_BITS)
#define FRAME_HEAD 15u /* magic 4, FLG, BD, content size 8, header checksum */
#define FRAME_HEAD_EMPTY 7u
#define END_MARK 4u
#define BLOCK_HEAD 4u
#define PAD 16u
#define LZ4LEN_MAX_INPUT 0x7FF00000u

static inline uint32_t rd32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline uint64_t rd64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static inline uint32_t hash16(const uint8_t *p) /* byU16 tables: 4 bytes, 13 bits */
{
    return (rd32(p) * 2654435761u) >> (32u - H16_BITS);
}

static inline uint32_t hash32(const uint8_t *p) /* byU32 tables: 5 bytes, 12 bits */
{
    return (uint32_t)(((rd64(p) << 24) * 889523592379ull) >> (64u - H32_BITS));
}

/* number of equal bytes d[a..] == d[m..], a never reaching lim (m < a) */
static inline uint32_t count_equal(const uint8_t *d, uint32_t a, uint32_t m, uint32_t lim)
{
    uint32_t start = a;
    while (a + 8u <= lim) {
        uint64_t x = rd64(d + a) ^ rd64(d + m);
        if (x) return a - start + ((uint32_t)__builtin_ctzll(x) >> 3);
        a += 8u;
        m += 8u;
    }
    while (a < lim && d[a] == d[m]) {
        a++;
        m++;
    }
    return a - start;
}

/* ------------------------------------------------------------------------------------------ */
/* the resumable block engine                                                                 */

enum { PH_START, PH_SEARCH, PH_MATCH, PH_AFTER, PH_ABORT, PH_DONE };

typedef struct {
    int phase;
    uint32_t S;             /* block start (absolute position) */
    uint32_t anchor;        /* start of the pending literal run */
    uint32_t ip, match, mc; /* PH_MATCH: match at ip from match, mc bytes past the first 4 */
    uint32_t fwd, step, nb, fwdh; /* PH_SEARCH: next probe, its step, probe count, its hash */
    uint64_t op;            /* output bytes so far (final size once PH_DONE) */
} bstate;

typedef uint64_t undo_t; /* old value << 32 | table slot */

typedef struct {
    undo_t *v;
    size_t n;
} ulog;

/*
 * Runs (or resumes) block [b->S, E).  prefix: E is only the end of the bytes known so far
 * (the block ends at or after it); the engine pauses (returns with b->phase set) instead of
 * taking any decision that depends on what follows E.  olimit: block size - 1 (prefix: the
 * largest possible, 65535).  wide: byU32 table (linked blocks), else byU16.  logging: record
 * (slot, old value) of every table write in lg.
 */
static inline __attribute__((always_inline)) void
block_engine(bstate *b, const uint8_t *d, uint32_t E, uint64_t olimit, void *table,
             const int wide, const int prefix, const int logging, ulog *lg)
{
    uint32_t *const t32 = (uint32_t *)table;
    uint16_t *const t16 = (uint16_t *)table;
    const uint32_t S = b->S;
    uint32_t anchor = b->anchor, ip = b->ip, match = b->match, mc = b->mc;
    uint32_t fwd = b->fwd, step = b->step, nb = b->nb, fwdh = b->fwdh;
    uint64_t op = b->op;
    uint32_t h, cand;

#define HASH(p) (wide ? hash32(d + (p)) : hash16(d + (p)))
#define TGET(hh) (wide ? t32[hh] : (uint32_t)t16[hh])
#define TSET(hh, val, oldv)                                                                     \
    do {                                                                                      \
        if (logging) lg->v[lg->n++] = (uint64_t)(oldv) << 32 | (hh);                          \
        if (wide)                                                                             \
            t32[hh] = (val);                                                                  \
        else                                                                                  \
            t16[hh] = (uint16_t)(val);                                                        \
    } while (0)
#define CHECK(need)                                                                           \
    do {                                                                                      \
        if ((uint64_t)(need) > olimit) goto abort;                                            \
    } while (0)
#define SAVE(ph)                                                                              \
    do {                                                                                      \
        b->phase = (ph);                                                                      \
        b->anchor = anchor;                                                                   \
        b->ip = ip;                                                                           \
        b->match = match;                                                                     \
        b->mc = mc;                                                                           \
        b->fwd = fwd;                                                                         \
        b->step = step;                                                                       \
        b->nb = nb;                                                                           \
        b->fwdh = fwdh;                                                                       \
        b->op = op;                                                                           \
    } while (0)

    switch (b->phase) {
    case PH_SEARCH: goto search;
    case PH_MATCH: goto extend;
    case PH_AFTER: goto after;
    case PH_ABORT:
    case PH_DONE: return;
    default: break;
    }

    /* PH_START */
    anchor = S;
    op = 0;
    if (E - S < MINLEN) {
        if (prefix) { /* the block's real length decides: resume from the start */
            SAVE(PH_START);
            return;
        }
        goto last;
    }
    h = HASH(S);
    TSET(h, S, TGET(h));
    ip = S + 1u;
    fwdh = HASH(ip);

new_search:
    fwd = ip;
    step = 1u;
    nb = 1u << SKIP_TRIGGER;
search:
    for (;;) {
        uint32_t p = fwd, nf = fwd + step;
        h = fwdh;
        if (__builtin_expect(nf > E - (MFLIMIT - 1u), 0)) { /* the probe after this one would lie past end - 11 */
            if (prefix) {
                SAVE(PH_SEARCH);
                return;
            }
            goto last;
        }
        step = nb++ >> SKIP_TRIGGER;
        cand = TGET(h);
        fwdh = HASH(nf);
        TSET(h, p, cand);
        fwd = nf;
        if (wide && cand + MAXDIST < p) continue; /* too far back */
        if (__builtin_expect(rd32(d + cand) == rd32(d + p), 0)) {
            ip = p;
            match = cand;
            break;
        }
    }
    /* extend backwards */
    while (ip > anchor && match > 0 && d[ip - 1u] == d[match - 1u]) {
        ip--;
        match--;
    }
    {
        uint32_t lit = ip - anchor;
        op += 1u; /* token */
        CHECK(op + lit + 8u + lit / 255u);
        op += lit + (lit + 240u) / 255u;
    }
next_match:
    op += 2u; /* offset */
    mc = 0;
extend:
    {
        uint32_t lim = E - LASTLIT;
        mc += count_equal(d, ip + MINMATCH + mc, match + MINMATCH + mc, lim);
        if (prefix && ip + MINMATCH + mc == lim) { /* may continue into the bytes after E */
            SAVE(PH_MATCH);
            return;
        }
    }
    CHECK(op + 6u + (mc + 240u) / 255u);
    op += (mc + 240u) / 255u;
    ip += mc + MINMATCH;
    anchor = ip;
after:
    if (ip >= E - (MFLIMIT - 1u)) {
        if (prefix) {
            SAVE(PH_AFTER);
            return;
        }
        goto last;
    }
    h = HASH(ip - 2u);
    TSET(h, ip - 2u, TGET(h));
    h = HASH(ip);
    cand = TGET(h);
    TSET(h, ip, cand);
    if ((!wide || cand + MAXDIST >= ip) && rd32(d + cand) == rd32(d + ip)) {
        match = cand;
        op += 1u; /* token, no literals */
        goto next_match;
    }
    ip++;
    fwdh = HASH(ip);
    goto new_search;

last:
    {
        uint32_t run = E - anchor;
        uint64_t c = op + 1u + run + (run + 240u) / 255u;
        if (c > olimit) goto abort;
        b->op = c;
        b->phase = PH_DONE;
        return;
    }
abort:
    b->phase = PH_ABORT;
    b->op = 0;
    return;
#undef HASH
#undef TGET
#undef TSET
#undef CHECK
#undef SAVE
}

static void run16_final(bstate *b, const uint8_t *d, uint32_t E, uint64_t ol, uint16_t *t)
{
    block_engine(b, d, E, ol, t, 0, 0, 0, NULL);
}
static void run16_final_log(bstate *b, const uint8_t *d, uint32_t E, uint64_t ol, uint16_t *t,
                            ulog *lg)
{
    block_engine(b, d, E, ol, t, 0, 0, 1, lg);
}
static void run16_prefix(bstate *b, const uint8_t *d, uint32_t E, uint16_t *t)
{
    block_engine(b, d, E, MAXDIST, t, 0, 1, 0, NULL);
}
static void run32_final(bstate *b, const uint8_t *d, uint32_t E, uint64_t ol, uint32_t *t)
{
    block_engine(b, d, E, ol, t, 1, 0, 0, NULL);
}
static void run32_final_log(bstate *b, const uint8_t *d, uint32_t E, uint64_t ol, uint32_t *t,
                            ulog *lg)
{
    block_engine(b, d, E, ol, t, 1, 0, 1, lg);
}
static void run32_prefix(bstate *b, const uint8_t *d, uint32_t E, uint32_t *t)
{
    block_engine(b, d, E, MAXDIST, t, 1, 1, 0, NULL);
}

static inline void bstate_start(bstate *b, uint32_t S)
{
    memset(b, 0, sizeof *b);
    b->phase = PH_START;
    b->S = S;
    b->anchor = S;
}

/* bytes the block takes in the frame (header + compressed or stored data) */
static inline uint64_t block_bytes(const bstate *b, uint32_t E)
{
    return BLOCK_HEAD + (b->phase == PH_DONE ? b->op : (uint64_t)(E - b->S));
}

/* ------------------------------------------------------------------------------------------ */
/* whole inputs                                                                               */

typedef struct scratch {
    struct scratch *next;
    uint16_t t16[H16_SIZE];
    uint32_t t32[H32_SIZE];
    uint8_t *buf;
    size_t bufcap;
    undo_t *log;
    size_t logcap;
} scratch;

static scratch *scratch_new(void)
{
    return (scratch *)calloc(1, sizeof(scratch));
}

static void scratch_free(scratch *s)
{
    if (!s) return;
    free(s->buf);
    free(s->log);
    free(s);
}

static int scratch_reserve(scratch *s, size_t bufn, size_t logn)
{
    if (bufn > s->bufcap) {
        uint8_t *nb = (uint8_t *)realloc(s->buf, bufn);
        if (!nb) return -1;
        s->buf = nb;
        s->bufcap = bufn;
    }
    if (logn > s->logcap) {
        undo_t *nl = (undo_t *)realloc(s->log, logn * sizeof(undo_t));
        if (!nl) return -1;
        s->log = nl;
        s->logcap = logn;
    }
    return 0;
}

/* frame length of d[0..n) (n <= LZ4LEN_MAX_INPUT); d needs no padding */
static uint64_t frame_length(scratch *s, const uint8_t *d, uint32_t n)
{
    bstate b;
    uint64_t total = FRAME_HEAD + END_MARK;
    uint32_t S;
    if (n == 0) return FRAME_HEAD_EMPTY + END_MARK;
    if (n <= BLOCK) {
        memset(s->t16, 0, sizeof s->t16);
        bstate_start(&b, 0);
        run16_final(&b, d, n, (uint64_t)n - 1u, s->t16);
        return total + block_bytes(&b, n);
    }
    memset(s->t32, 0, sizeof s->t32);
    for (S = 0; S < n; S += BLOCK) {
        uint32_t E = n - S > BLOCK ? S + BLOCK : n;
        bstate_start(&b, S);
        run32_final(&b, d, E, (uint64_t)(E - S) - 1u, s->t32);
        total += block_bytes(&b, E);
        if (E == n) break;
    }
    return total;
}

/* ------------------------------------------------------------------------------------------ */
/* many targets                                                                               */

typedef struct {
    Py_ssize_t n;
    const uint8_t *arena;
    const size_t *off;
    const size_t *len;
    size_t maxlen;
} tset;

static inline void undo16(uint16_t *t, ulog *lg)
{
    size_t k;
    for (k = lg->n; k-- > 0;) t[(uint32_t)lg->v[k]] = (uint16_t)(lg->v[k] >> 32);
    lg->n = 0;
}

static inline void undo32(uint32_t *t, ulog *lg)
{
    size_t k;
    for (k = lg->n; k-- > 0;) t[(uint32_t)lg->v[k]] = (uint32_t)(lg->v[k] >> 32);
    lg->n = 0;
}

/* x = s->buf[0..L) alone, single independent block (L <= 64 KiB): the paused state */
static void prefix16(scratch *s, uint32_t L, bstate *p16)
{
    memset(s->t16, 0, sizeof s->t16);
    bstate_start(p16, 0);
    run16_prefix(p16, s->buf, L, s->t16);
}

/* x = s->buf[0..L) alone, linked blocks: the complete blocks inside x are compressed (their
   frame bytes returned), the block holding x's end is paused */
static uint64_t prefix32(scratch *s, uint32_t L, bstate *p32)
{
    uint64_t base = 0;
    uint32_t S;
    memset(s->t32, 0, sizeof s->t32);
    for (S = 0; (uint64_t)S + BLOCK <= L; S += BLOCK) {
        bstate_start(p32, S);
        run32_final(p32, s->buf, S + BLOCK, BLOCK - 1u, s->t32);
        base += block_bytes(p32, S + BLOCK);
    }
    bstate_start(p32, S);
    if (S < L) run32_prefix(p32, s->buf, L, s->t32);
    return base;
}

/*
 * frame lengths of x + t for every target t; 0 ok, -1 memory.  With cx, also the frame length of
 * x alone, as x + an empty target (resumed from the same paused state: x is run once for all).
 */
static int concat_all(scratch *s, const tset *ts, const uint8_t *x, uint32_t L, int64_t *out,
                      int64_t *cx)
{
    int need16 = 0, need32 = 0;
    Py_ssize_t j, n = ts->n + (cx != NULL); /* j == ts->n: the empty target */
    bstate p16, p32;
    uint64_t base32 = 0; /* frame bytes of the linked blocks wholly inside x */
    uint32_t low = L;    /* table writes of a continuation are at positions >= low */
    ulog lg;

    for (j = 0; j < n; j++) {
        uint64_t N = (uint64_t)L + (j < ts->n ? ts->len[j] : 0u);
        if (N > BLOCK)
            need32 = 1;
        else if (N > 0)
            need16 = 1;
    }
    if (scratch_reserve(s, (size_t)L + ts->maxlen + PAD, 1)) return -1;
    if (L) memcpy(s->buf, x, L);
    memset(s->buf + L, 0, PAD);

    if (need16) { /* L <= 64 KiB here */
        prefix16(s, L, &p16);
        if (p16.anchor < low) low = p16.anchor;
    }
    if (need32) {
        base32 = prefix32(s, L, &p32);
        if (p32.anchor < low) low = p32.anchor;
    }
    low = low >= 2u ? low - 2u : 0u;
    /* writes are at distinct increasing positions in [low, L + |y|) */
    if (scratch_reserve(s, (size_t)L + ts->maxlen + PAD, (size_t)(L - low) + ts->maxlen + 8u))
        return -1;
    lg.v = s->log;
    lg.n = 0;

    for (j = 0; j < n; j++) {
        size_t yl = j < ts->n ? ts->len[j] : 0u;
        int64_t *dst = j < ts->n ? &out[j] : cx;
        uint32_t N = L + (uint32_t)yl;
        bstate b;
        uint64_t total = FRAME_HEAD + END_MARK;
        if (N == 0) {
            *dst = FRAME_HEAD_EMPTY + END_MARK;
            continue;
        }
        if (yl) memcpy(s->buf + L, ts->arena + ts->off[j], yl);
        memset(s->buf + N, 0, PAD);
        if (N <= BLOCK) {
            b = p16;
            run16_final_log(&b, s->buf, N, (uint64_t)N - 1u, s->t16, &lg);
            *dst = (int64_t)(total + block_bytes(&b, N));
            undo16(s->t16, &lg);
        } else {
            uint32_t S = p32.S, E = N - S > BLOCK ? S + BLOCK : N;
            b = p32;
            total += base32;
            /* S == N: x ends on a block boundary and the target is empty */
            for (; S < N;) {
                run32_final_log(&b, s->buf, E, (uint64_t)(E - S) - 1u, s->t32, &lg);
                total += block_bytes(&b, E);
                if (E == N) break;
                S = E;
                E = N - S > BLOCK ? S + BLOCK : N;
                bstate_start(&b, S);
            }
            *dst = (int64_t)total;
            undo32(s->t32, &lg);
        }
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Python: lz4_length                                                                         */

#define POOL_MAX 8
static PyThread_type_lock single_lock;
static scratch *single_pool;
static int single_pooled;

static scratch *single_get(void)
{
    scratch *s;
    PyThread_acquire_lock(single_lock, WAIT_LOCK);
    s = single_pool;
    if (s) {
        single_pool = s->next;
        single_pooled--;
    }
    PyThread_release_lock(single_lock);
    return s ? s : scratch_new();
}

static void single_put(scratch *s)
{
    PyThread_acquire_lock(single_lock, WAIT_LOCK);
    if (single_pooled < POOL_MAX) {
        s->next = single_pool;
        single_pool = s;
        single_pooled++;
        s = NULL;
    }
    PyThread_release_lock(single_lock);
    scratch_free(s);
}

static PyObject *py_lz4_length(PyObject *self, PyObject *arg)
{
    Py_buffer view;
    scratch *s;
    uint64_t r;
    (void)self;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    if ((size_t)view.len > LZ4LEN_MAX_INPUT) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_OverflowError, "input longer than _lz4len.MAX_INPUT");
        return NULL;
    }
    s = single_get();
    if (!s) {
        PyBuffer_Release(&view);
        return PyErr_NoMemory();
    }
    Py_BEGIN_ALLOW_THREADS
    r = frame_length(s, (const uint8_t *)view.buf, (uint32_t)view.len);
    Py_END_ALLOW_THREADS
    single_put(s);
    PyBuffer_Release(&view);
    return PyLong_FromUnsignedLongLong((unsigned long long)r);
}

/* testing aid: where the source alone pauses, as (byU16 phase or None, byU32 phase) */
static const char *const phase_names[] = {"start", "search", "match", "after", "abort", "done"};

static PyObject *py_pause_phases(PyObject *self, PyObject *arg)
{
    Py_buffer view;
    scratch *s;
    bstate p16, p32;
    uint32_t L;
    (void)self;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    if ((size_t)view.len > LZ4LEN_MAX_INPUT) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_OverflowError, "input longer than _lz4len.MAX_INPUT");
        return NULL;
    }
    L = (uint32_t)view.len;
    s = scratch_new();
    if (!s || scratch_reserve(s, (size_t)L + PAD, 1)) {
        scratch_free(s);
        PyBuffer_Release(&view);
        return PyErr_NoMemory();
    }
    if (L) memcpy(s->buf, view.buf, L);
    PyBuffer_Release(&view);
    if (L <= BLOCK) prefix16(s, L, &p16);
    prefix32(s, L, &p32);
    scratch_free(s);
    if (L <= BLOCK) return Py_BuildValue("(ss)", phase_names[p16.phase], phase_names[p32.phase]);
    return Py_BuildValue("(Os)", Py_None, phase_names[p32.phase]);
}

/* ------------------------------------------------------------------------------------------ */
/* Python: Lz4Targets                                                                         */

typedef struct {
    PyObject_HEAD
    tset ts;
    uint8_t *arena;
    size_t *off;
    size_t *len;
    int64_t *tlen; /* frame length of each target alone */
    PyThread_type_lock lock;
    scratch *pool;
} TargetsObject;

static void targets_dealloc(TargetsObject *self)
{
    scratch *s = self->pool;
    while (s) {
        scratch *nx = s->next;
        scratch_free(s);
        s = nx;
    }
    if (self->lock) PyThread_free_lock(self->lock);
    free(self->arena);
    free(self->off);
    free(self->len);
    free(self->tlen);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int targets_init(TargetsObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"targets", NULL};
    PyObject *seq;
    Py_ssize_t i, n;
    size_t total = 0, maxlen = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O:Lz4Targets", kwlist, &seq)) return -1;
    if (self->lock) {
        PyErr_SetString(PyExc_RuntimeError, "Lz4Targets already initialised");
        return -1;
    }
    if (copy_targets(seq, LZ4LEN_MAX_INPUT / 2u, "Lz4Targets", &self->arena, &self->off, &self->len, &n, &total,
                     &maxlen) < 0)
        return -1;
    self->tlen = (int64_t *)malloc(sizeof(int64_t) * (size_t)(n ? n : 1));
    self->lock = PyThread_allocate_lock();
    if (!self->tlen || !self->lock) {
        PyErr_NoMemory();
        return -1;
    }
    self->ts.n = n;
    self->ts.arena = self->arena;
    self->ts.off = self->off;
    self->ts.len = self->len;
    self->ts.maxlen = maxlen;
    {
        scratch *s = scratch_new();
        if (!s) {
            PyErr_NoMemory();
            return -1;
        }
        for (i = 0; i < n; i++)
            self->tlen[i] = (int64_t)frame_length(s, self->arena + self->off[i], (uint32_t)self->len[i]);
        scratch_free(s);
    }
    return 0;
}

static scratch *pool_get(TargetsObject *self)
{
    scratch *s;
    PyThread_acquire_lock(self->lock, WAIT_LOCK);
    s = self->pool;
    if (s) self->pool = s->next;
    PyThread_release_lock(self->lock);
    return s ? s : scratch_new();
}

static void pool_put(TargetsObject *self, scratch *s)
{
    PyThread_acquire_lock(self->lock, WAIT_LOCK);
    s->next = self->pool;
    self->pool = s;
    PyThread_release_lock(self->lock);
}

static PyObject *targets_concat_lengths(TargetsObject *self, PyObject *arg)
{
    Py_buffer view;
    scratch *s;
    int64_t *out;
    int rc;
    PyObject *list;
    if (!self->lock) {
        PyErr_SetString(PyExc_RuntimeError, "Lz4Targets.__init__ was not called");
        return NULL;
    }
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    if ((size_t)view.len > LZ4LEN_MAX_INPUT - self->ts.maxlen) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_OverflowError, "source + target longer than _lz4len.MAX_INPUT");
        return NULL;
    }
    out = (int64_t *)malloc(sizeof(int64_t) * (size_t)(self->ts.n ? self->ts.n : 1));
    s = pool_get(self);
    if (!out || !s) {
        free(out);
        if (s) pool_put(self, s);
        PyBuffer_Release(&view);
        return PyErr_NoMemory();
    }
    Py_BEGIN_ALLOW_THREADS
    rc = concat_all(s, &self->ts, (const uint8_t *)view.buf, (uint32_t)view.len, out, NULL);
    Py_END_ALLOW_THREADS
    pool_put(self, s);
    PyBuffer_Release(&view);
    if (rc < 0) {
        free(out);
        return PyErr_NoMemory();
    }
    list = int64_list(out, self->ts.n, 0);
    free(out);
    return list;
}

/*
 * The alignment contract of _alignment.h (ALIGN_NOT_HANDLED: a source longer than MAX_INPUT minus
 * the longest target).  C(x) comes from the same pass as the C(x + t_j): concat_all's empty
 * target.  Called through the capsule by _docwork.c, and by Lz4Targets.alignment.
 */
static int alignment_nogil(PyObject *targets, const uint8_t *x, size_t L, double *result)
{
    TargetsObject *self = (TargetsObject *)targets;
    const tset *ts = &self->ts;
    scratch *s;
    int64_t *out, cx = 0;
    int rc;
    if (!self->lock || ts->n == 0) return ALIGN_NO_TARGETS;
    if (L > LZ4LEN_MAX_INPUT - ts->maxlen) return ALIGN_NOT_HANDLED;
    out = (int64_t *)malloc(sizeof(int64_t) * (size_t)ts->n);
    s = pool_get(self);
    if (!out || !s) {
        free(out);
        if (s) pool_put(self, s);
        return ALIGN_NO_MEMORY;
    }
    rc = concat_all(s, ts, x, (uint32_t)L, out, &cx);
    pool_put(self, s);
    if (rc == 0) *result = ncd_alignment(cx, self->tlen, out, 0, ts->n);
    free(out);
    return rc < 0 ? ALIGN_NO_MEMORY : ALIGN_OK;
}

static PyObject *targets_alignment(TargetsObject *self, PyObject *arg)
{
    return alignment_method((PyObject *)self, arg, alignment_nogil, self->lock != NULL, self->ts.n,
                            "Lz4Targets");
}

static PyObject *targets_lengths(TargetsObject *self, void *closure)
{
    (void)closure;
    return int64_list(self->tlen, self->ts.n, 0);
}

static PyObject *targets_n(TargetsObject *self, void *closure)
{
    (void)closure;
    return PyLong_FromSsize_t(self->ts.n);
}

static PyMethodDef targets_methods[] = {
    {"concat_lengths", (PyCFunction)targets_concat_lengths, METH_O,
     "concat_lengths(source) -> [len(lz4.frame.compress(source + t, compression_level=0)) "
     "for every target t]"},
    {"alignment", (PyCFunction)targets_alignment, METH_O,
     "alignment(source) -> 1 - mean NCD(source, t) over the targets, as "
     "ncd.TargetSet.alignment_of_lengths"},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef targets_getset[] = {
    {"n", (getter)targets_n, NULL, "number of targets", NULL},
    {"lengths", (getter)targets_lengths, NULL, "[lz4_length(t) for every target t]", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

static PyTypeObject TargetsType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "zipfit_beam.score._lz4len.Lz4Targets",
    .tp_basicsize = sizeof(TargetsObject),
    .tp_dealloc = (destructor)targets_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Lz4Targets(targets): a fixed list of byte strings, prepared once; "
              "concat_lengths(source) gives len(lz4.frame.compress(source + t)) for each.",
    .tp_methods = targets_methods,
    .tp_getset = targets_getset,
    .tp_init = (initproc)targets_init,
    .tp_new = PyType_GenericNew,
};

static PyMethodDef module_methods[] = {
    {"lz4_length", (PyCFunction)py_lz4_length, METH_O,
     "lz4_length(data) -> len(lz4.frame.compress(data, compression_level=0))"},
    {"_pause_phases", (PyCFunction)py_pause_phases, METH_O,
     "testing aid: the state the source alone pauses in, (byU16 or None, byU32)"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "_lz4len",
    "Exact LZ4 frame lengths (LZ4 1.9.4 LZ4F_compressFrame, fast mode, python-lz4 defaults).",
    -1, module_methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__lz4len(void)
{
    PyObject *m;
    if (!single_lock) single_lock = PyThread_allocate_lock();
    if (!single_lock) return PyErr_NoMemory();
    if (PyType_Ready(&TargetsType) < 0) return NULL;
    m = PyModule_Create(&moduledef);
    if (!m) return NULL;
    Py_INCREF(&TargetsType);
    if (PyModule_AddObject(m, "Lz4Targets", (PyObject *)&TargetsType) < 0) {
        Py_DECREF(&TargetsType);
        Py_DECREF(m);
        return NULL;
    }
    if (PyModule_AddStringConstant(m, "LZ4_COMPAT", "1.9.4") < 0 ||
        PyModule_AddIntConstant(m, "MAX_INPUT", (long)LZ4LEN_MAX_INPUT) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    {
        /* alignment_fn over an Lz4Targets (_alignment.h) */
        PyObject *cap = PyCapsule_New((void *)alignment_nogil,
                                      "zipfit_beam.score._lz4len." ALIGNMENT_CAPSULE_ATTR, NULL);
        if (!cap || PyModule_AddObject(m, ALIGNMENT_CAPSULE_ATTR, cap) < 0) {
            Py_XDECREF(cap);
            Py_DECREF(m);
            return NULL;
        }
    }
    return m;
}
