/*
 * zipfit_beam._gzip1 -- exact gzip level-1 compressed lengths, computed without compressing.
 *
 * len(gzip.compress(data, 1)) == len(zlib.compress(data, 1, -15)) + 18.  The raw deflate part is
 * what zlib 1.2.11 .. 1.3.2 produce at level 1 (deflate_fast: 3-byte hash of 15 bits, hash chains
 * cut at 4, nice_match 8, strings inside matches longer than 4 not hashed; windowBits 15,
 * memLevel 8, so 16383 symbols per block; one deflate() call with Z_FINISH, which is what
 * Python's zlib.compress does).  This module re-implements that parser and the per-block choice
 * between stored, fixed-Huffman and dynamic-Huffman coding, and counts bits instead of writing
 * them.  Independent implementation written from the algorithm's description; no zlib code.
 *
 * API: gzip1_length(data) -> int;  Gzip1Targets(targets).concat_lengths(source) -> list[int]
 * (len(gzip.compress(source + t, 1)) for every target t);  Gzip1Targets.alignment(source) ->
 * 1 - mean NCD (ncd.TargetSet.alignment, bit-identical, no per-target Python objects);
 * ZLIB_COMPAT: the zlib releases whose level-1 output this reproduces, each built and compared
 * by benchmarks/zlib_versions.py.
 *
 * Engines
 *   flat    inputs shorter than 65274 bytes, where zlib never slides its window: positions are
 *           absolute offsets into one buffer, hash heads/chains are plain arrays.
 *   window  a faithful model of zlib's 64 KiB window (reads of the input in window-sized pieces,
 *           slides with hash rebasing, stale bytes, the zeroed high-water area) for the rest.
 *
 * Reuse across targets (concat_lengths)
 *   The source x is parsed once, up to the first step whose outcome can depend on what follows
 *   x: normally the first step whose match search may compare a byte of the target.  Each
 *   target resumes from there; the hash-table writes it makes are logged and undone, so nothing
 *   of size 64 KiB is copied per target.  When x + target is long enough for the window to
 *   slide, the window engine resumes from a per-source snapshot instead (x parsed once).
 *
 * Block sizes
 *   Code lengths come from a re-implementation of zlib's heap-based Huffman construction
 *   (build_tree/gen_bitlen): nodes ordered by (frequency, depth) with zlib's exact heap layout
 *   and tie order, which decides which of several equally frequent symbols gets which length and
 *   therefore the size of the code-length description.  Lengths over the limit are repaired
 *   as zlib does.  The bit-length tree, its 3*(n+1) + 14 header bits, the fixed-code size, and
 *   the stored size (with the byte alignment of a stored block, only while the block's data is
 *   still in the window) follow _tr_flush_block.
 *
 * Inputs over 4 GiB (which Python's zlib.compress feeds to zlib in pieces) have not been checked
 * against zlib.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "pythread.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "_alignment.h"

/* ------------------------------------------------------------------------------------------ */
/* deflate constants for level 1, windowBits 15, memLevel 8                                   */

#define WSIZE 32768u
#define WMASK (WSIZE - 1u)
#define HBITS 15u
#define HSIZE (1u << HBITS)
#define HMASK (HSIZE - 1u)
#define MINM 3u
#define MAXM 258u
#define MIN_LOOK (MAXM + MINM + 1u)          /* 262 */
#define MAXDIST (WSIZE - MIN_LOOK)           /* 32506 */
#define SLIDE_AT (WSIZE + MAXDIST)           /* 65274: strstart that triggers a slide */
#define WINSZ (2u * WSIZE)
#define BLOCK_SYMS 16383u                    /* (lit_bufsize - 1): symbols per block */
#define CHAIN 4
#define NICE 8u
#define MAX_INSERT 4u

#define L_CODES 286
#define D_CODES 30
#define BL_CODES 19
#define HEAP_SIZE (2 * L_CODES + 1)

/* GZIP1_PROFILE: per-phase cycle counters (rdtsc) for benchmarks/kernel_breakdown; never in wheels */
#if defined(GZIP1_PROFILE) && defined(__x86_64__)
#include <x86intrin.h>
static uint64_t prof_cyc[16], prof_cnt[16];
#define PROF_DECL uint64_t prof_t0_ = __rdtsc(), prof_t1_
#define PROF_MARK(i) (prof_t1_ = __rdtsc(), prof_cyc[i] += prof_t1_ - prof_t0_, prof_cnt[i]++, prof_t0_ = prof_t1_)
#else
#define PROF_DECL (void)0
#define PROF_MARK(i) ((void)0)
#endif

#define PAD 320u                             /* slack after data for word-wise compares */
#define PREFETCH_AHEAD 8u

/* ------------------------------------------------------------------------------------------ */
/* static tables                                                                              */

static const uint8_t lbits_extra[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2,
                                        2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
static const uint8_t dbits_extra[D_CODES] = {0, 0, 0, 0, 1, 1, 2, 2,  3,  3,  4,  4,  5,  5,  6,
                                             6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};
static const uint8_t blbits_extra[BL_CODES] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                               0, 0, 0, 0, 0, 0, 2, 3, 7};
static const uint8_t bl_rank[BL_CODES] = {16, 17, 18, 0, 8, 7, 9, 6, 10, 5,
                                          11, 4, 12, 3, 13, 2, 14, 1, 15};

static uint8_t len_sym[MAXM + 1];    /* match length -> length code 0..28 */
static uint8_t fixed_llen[288];      /* fixed-code lengths of the literal/length alphabet */

static void init_tables(void)
{
    int code, n, len = 3;
    for (code = 0; code < 28; code++) {
        for (n = 0; n < (1 << lbits_extra[code]); n++) {
            if (len <= (int)MAXM) len_sym[len] = (uint8_t)code;
            len++;
        }
    }
    len_sym[MAXM] = 28; /* 258 has its own code */
    for (n = 0; n < 288; n++)
        fixed_llen[n] = (uint8_t)(n < 144 ? 8 : n < 256 ? 9 : n < 280 ? 7 : 8);
}

/* distance code of (distance - 1) */
static inline unsigned dist_sym(unsigned d)
{
    if (d < 4) return d;
    unsigned nb = 31u - (unsigned)__builtin_clz(d);
    return 2u * nb + ((d >> (nb - 1u)) & 1u);
}

static inline unsigned hash3(const uint8_t *p)
{
    return (((unsigned)p[0] << 10) ^ ((unsigned)p[1] << 5) ^ (unsigned)p[2]) & HMASK;
}

/* ------------------------------------------------------------------------------------------ */
/* Huffman code lengths, reproducing the tree construction of zlib's trees.c exactly:          */
/* heap ordered by (frequency, depth) with its particular sift order, forced second code,     */
/* length limit with the overflow repair that re-deals lengths in heap order.                 */

typedef struct {
    uint64_t heap[4 * HEAP_SIZE + 16]; /* (freq << 18) | (depth << 10) | node, then ~0 */
    uint16_t order[HEAP_SIZE];    /* nodes by increasing weight, filled from the top */
    uint16_t dad[HEAP_SIZE];
    uint8_t nlen[HEAP_SIZE + 2];  /* code length of every node */
    uint16_t syms[L_CODES + 2];
    int bl_count[16];
} hwork;

#define HKEY_MASK 1023u /* low bits hold the node id; comparisons ignore them */

/*
 * zlib's smaller(): (freq, depth) lexicographically <=.  With the node id in the low 10 bits,
 * a <= b on keys is  a <= (b | HKEY_MASK).
 */

/*
 * Sinks v from node k (zlib's pqdownheap(k)) through a fixed number of levels,
 * D = floor(log2(hl)) - floor(log2(k)), without data-dependent branches.  The walk follows the
 * smaller-child path (the right child wins ties, as in zlib) to the bottom; along it the keys
 * c_0 <= c_1 <= ...
 * are sorted, so zlib's rule (children move up while v is larger; v stops at the first node
 * where it is <= the smaller child) gives node P_t the content
 *     c_t      if v > c_t,
 *     v        if c_{t-1} < v <= c_t,
 *     c_{t-1}  otherwise (its own old content),
 * i.e. each path node is rewritten with its final content and store addresses depend only on
 * the path.  The heap beyond hl holds ~0 (never smaller, never moved) up to index 4*hl + 8; the
 * four grandchildren are loaded one level ahead.  Keys compare as a <= (b | HKEY_MASK).
 */
static inline void sink_at(uint64_t *heap, size_t k, int D, uint64_t v)
{
    uint64_t l = heap[2 * k], r = heap[2 * k + 1], cprev = 0; /* c_{-1}: below every key */
    /* v > (c | M)  <=>  (v & ~M) > c: v's side of every comparison is fixed */
    const uint64_t vl = v & ~(uint64_t)HKEY_MASK;
    size_t P = k;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(GZIP1_NO_ASM)
    if (D > 0) {
        /* The C loop below with the selects forced to cmov (compilers emit branches here).
           Q = 4P: the grandchildren are at heap + 8Q bytes, node P at heap + 2Q bytes.
           14 registers, so it also builds with a reserved frame pointer. */
        uint64_t g0, g1, q0, q1, c, x;
        uint64_t Q = 4 * (uint64_t)P;
        long t = D;
        __asm__ volatile(
            /* two levels per turn, the second with the registers' roles swapped
               (Q <-> q0, l <-> g0, r <-> g1, cprev <-> c), so no register moves */
            "1:\n\t"
            "mov (%[heap], %[Q], 8), %[g0]\n\t"
            "mov 8(%[heap], %[Q], 8), %[g1]\n\t"
            "lea (%[Q], %[Q]), %[q0]\n\t"
            "lea 4(%[Q], %[Q]), %[q1]\n\t"
            "mov %[l], %[c]\n\t"
            "or $0x3ff, %[c]\n\t"
            "cmp %[c], %[r]\n\t" /* the right child wins when r <= (l | M) */
            "mov %[l], %[c]\n\t"
            "cmovbe %[r], %[c]\n\t"
            "cmovbe 16(%[heap], %[Q], 8), %[g0]\n\t"
            "cmovbe 24(%[heap], %[Q], 8), %[g1]\n\t"
            "cmovbe %[q1], %[q0]\n\t" /* next Q = 4 * (2P + right) */
            "mov %[v], %[x]\n\t"
            "cmp %[c], %[vl]\n\t" /* x = v > c ? c : v */
            "cmova %[c], %[x]\n\t"
            "cmp %[cprev], %[vl]\n\t" /* node P gets v > c_prev ? x : c_prev */
            "cmovbe %[cprev], %[x]\n\t"
            "mov %[x], (%[heap], %[Q], 2)\n\t"
            "dec %[t]\n\t"
            "jz 2f\n\t"
            "mov (%[heap], %[q0], 8), %[l]\n\t"
            "mov 8(%[heap], %[q0], 8), %[r]\n\t"
            "lea (%[q0], %[q0]), %[Q]\n\t"
            "lea 4(%[q0], %[q0]), %[q1]\n\t"
            "mov %[g0], %[cprev]\n\t"
            "or $0x3ff, %[cprev]\n\t"
            "cmp %[cprev], %[g1]\n\t"
            "mov %[g0], %[cprev]\n\t"
            "cmovbe %[g1], %[cprev]\n\t"
            "cmovbe 16(%[heap], %[q0], 8), %[l]\n\t"
            "cmovbe 24(%[heap], %[q0], 8), %[r]\n\t"
            "cmovbe %[q1], %[Q]\n\t"
            "mov %[v], %[x]\n\t"
            "cmp %[cprev], %[vl]\n\t"
            "cmova %[cprev], %[x]\n\t"
            "cmp %[c], %[vl]\n\t"
            "cmovbe %[c], %[x]\n\t"
            "mov %[x], (%[heap], %[q0], 2)\n\t"
            "dec %[t]\n\t"
            "jnz 1b\n\t"
            "jmp 3f\n\t"
            "2:\n\t"
            "mov %[q0], %[Q]\n\t"
            "mov %[c], %[cprev]\n\t"
            "3:\n\t"
            : [Q] "+r"(Q), [l] "+r"(l), [r] "+r"(r), [cprev] "+r"(cprev), [t] "+r"(t),
              [g0] "=&r"(g0), [g1] "=&r"(g1), [q0] "=&r"(q0), [q1] "=&r"(q1), [c] "=&r"(c),
              [x] "=&r"(x)
            : [heap] "r"(heap), [v] "r"(v), [vl] "r"(vl)
            : "cc", "memory");
        P = (size_t)(Q >> 2);
    }
#else
    {
        int t;
        for (t = 0; t < D; t++) {
            const uint64_t *g = heap + 4 * P;
            uint64_t g0 = g[0], g1 = g[1], g2 = g[2], g3 = g[3];
            uint64_t rm = 0 - (uint64_t)(r <= (l | HKEY_MASK));
            uint64_t c = l ^ ((l ^ r) & rm);
            uint64_t x = vl > c ? c : v;
            heap[P] = vl > cprev ? x : cprev;
            cprev = c;
            P = 2 * P + (size_t)(rm & 1u);
            l = g0 ^ ((g0 ^ g2) & rm);
            r = g1 ^ ((g1 ^ g3) & rm);
        }
    }
#endif
    heap[P] = vl > cprev ? v : cprev;
}

static inline int ilog2u(unsigned x)
{
    return 31 - __builtin_clz(x);
}

/*
 * Code lengths for the used symbols syms[0..k) (ascending, freq > 0) of an alphabet of `elems`
 * symbols, limited to max_length, exactly as zlib's build_tree/gen_bitlen make them.  Lengths go
 * to w->nlen[0..elems) (0 for unused symbols).  Returns zlib's opt_len contribution without
 * extra bits: sum freq*len, minus one per code forced in to make two.  *max_code_out gets the
 * largest coded symbol (forced ones included).
 */
static int64_t huff_lengths(hwork *w, const uint32_t *freq, const uint16_t *syms, int k, int elems,
                            int max_length, int *max_code_out)
{
    uint64_t *heap = w->heap;
    uint16_t *order = w->order, *dad = w->dad;
    uint8_t *nlen = w->nlen;
    int hl = 0, max_code = -1, i, node, om = HEAP_SIZE, nforced = 0, n, m, h, bits, overflow = 0;
    int forced[2] = {0, 0};
    int64_t opt = 0;
    PROF_DECL;

    memset(nlen, 0, (size_t)elems);
    for (i = 0; i < k; i++) {
        n = syms[i];
        heap[++hl] = ((uint64_t)freq[n] << 18) | (uint64_t)n;
    }
    if (k) max_code = syms[k - 1];
    while (hl < 2) {
        node = (max_code < 2 ? ++max_code : 0);
        heap[++hl] = ((uint64_t)1 << 18) | (uint64_t)node;
        forced[nforced++] = node;
    }
    for (i = hl + 1; i < 4 * hl + 12; i++) heap[i] = ~(uint64_t)0;
    *max_code_out = max_code;
    {
        int Dh = ilog2u((unsigned)hl);
        for (i = hl / 2; i >= 1; i--) sink_at(heap, (size_t)i, Dh - ilog2u((unsigned)i), heap[i]);
    }
    if (elems == L_CODES) PROF_MARK(8);

    node = elems;
    do {
        uint64_t a = heap[1], b, da, db, d, last = heap[hl];
        int D;
        heap[hl] = ~(uint64_t)0;
        hl--;
        D = ilog2u((unsigned)hl);
        sink_at(heap, 1, D, last);
        b = heap[1];
        n = (int)(a & HKEY_MASK);
        m = (int)(b & HKEY_MASK);
        order[--om] = (uint16_t)n;
        order[--om] = (uint16_t)m;
        da = (a >> 10) & 0xffu;
        db = (b >> 10) & 0xffu;
        d = ((da >= db ? da : db) + 1u) & 0xffu;
        dad[n] = dad[m] = (uint16_t)node;
        sink_at(heap, 1, D, (((a >> 18) + (b >> 18)) << 18) | (d << 10) | (uint64_t)node);
        node++;
    } while (hl >= 2);
    order[--om] = (uint16_t)(heap[1] & HKEY_MASK);
    if (elems == L_CODES) PROF_MARK(9);

    /* gen_bitlen: lengths top-down in heap order (parents first), clamped at max_length with
       every clamp (internal nodes included) counted as zlib counts it */
    nlen[order[om]] = 0;
    for (h = om + 1; h < HEAP_SIZE; h++) {
        int over;
        n = order[h];
        bits = nlen[dad[n]] + 1;
        over = bits > max_length;
        overflow += over;
        nlen[n] = (uint8_t)(bits - over);
    }
    for (i = 0; i < k; i++) opt += (int64_t)freq[syms[i]] * nlen[syms[i]];
    for (i = 0; i < nforced; i++) opt += (int64_t)nlen[forced[i]] - 1; /* frequency 1, minus 1 */
    if (elems == L_CODES) PROF_MARK(10);
    if (overflow) {
        for (bits = 0; bits <= 15; bits++) w->bl_count[bits] = 0;
        for (i = 0; i < k; i++) w->bl_count[nlen[syms[i]]]++;
        for (i = 0; i < nforced; i++) w->bl_count[nlen[forced[i]]]++;
        do {
            bits = max_length - 1;
            while (w->bl_count[bits] == 0) bits--;
            w->bl_count[bits]--;
            w->bl_count[bits + 1] += 2;
            w->bl_count[max_length]--;
            overflow -= 2;
        } while (overflow > 0);
        h = HEAP_SIZE;
        for (bits = max_length; bits != 0; bits--) {
            n = w->bl_count[bits];
            while (n != 0) {
                m = order[--h];
                if (m > max_code) continue;
                if (nlen[m] != (unsigned)bits) {
                    opt += ((int64_t)bits - (int64_t)nlen[m]) * (int64_t)(freq[m] ? freq[m] : 1u);
                    nlen[m] = (uint8_t)bits;
                }
                n--;
            }
        }
    }
    return opt;
}

/* ascending list of the symbols with nonzero frequency */
static inline int used_syms(const uint32_t *freq, int elems, uint16_t *syms)
{
    int n = 0, k = 0, i;
    for (; n + 4 <= elems; n += 4) {
        uint64_t a, b;
        memcpy(&a, freq + n, 8);
        memcpy(&b, freq + n + 2, 8);
        if (!(a | b)) continue; /* runs of unused symbols (bytes >= 128 in text) */
        for (i = 0; i < 4; i++) {
            syms[k] = (uint16_t)(n + i);
            k += freq[n + i] != 0;
        }
    }
    for (; n < elems; n++) {
        syms[k] = (uint16_t)n;
        k += freq[n] != 0;
    }
    return k;
}

/*
 * Bit-length-alphabet frequencies of one code-length sequence, as zlib's scan_tree counts them,
 * one run of equal lengths at a time.  zlib's rules, per maximal run of R equal lengths v:
 *   v == 0: pieces of up to 138; a piece of c adds c zeros if c < 3, else one REPZ_3_10
 *           (c <= 10) or one REPZ_11_138.
 *   v != 0: a first piece of up to 7: c < 4 adds c copies of v, else v once plus REP_3_6;
 *           after a full first piece, pieces of up to 6 each add REP_3_6, or c copies of v when
 *           c < 3.
 * run_add[v != 0][R] holds the resulting (copies of v, REP_3_6, REPZ_3_10, REPZ_11_138).
 */
#define RUN_MAX (L_CODES + 1)
static uint8_t run_add[2][RUN_MAX + 1][4];

static void init_run_table(void)
{
    unsigned R;
    for (R = 1; R <= RUN_MAX; R++) {
        uint8_t *z = run_add[0][R], *nz = run_add[1][R];
        unsigned c = R % 138;
        z[3] = (uint8_t)(R / 138);
        if (c) {
            if (c < 3) z[0] = (uint8_t)c;
            else if (c <= 10) z[2]++;
            else z[3]++;
        }
        if (R < 4) nz[0] = (uint8_t)R;
        else if (R < 7) nz[0] = 1, nz[1] = 1;
        else {
            unsigned rest = R - 7;
            nz[0] = 1;
            nz[1] = (uint8_t)(1 + rest / 6);
            rest %= 6;
            if (rest < 3) nz[0] = (uint8_t)(nz[0] + rest);
            else nz[1]++;
        }
    }
}

/* len[] must have 8 readable bytes after max_code + 1 (a guard is written there) */
static void scan_lengths(uint8_t *len, int max_code, uint32_t *blf)
{
    int i = 0;
    len[max_code + 1] = 0xff; /* guard: never a real length */
    while (i <= max_code) {
        unsigned v = len[i];
        int j = i + 1;
        const uint8_t *add;
        uint64_t vv = (uint64_t)v * 0x0101010101010101ull;
        for (;;) {
            uint64_t wv;
            memcpy(&wv, len + j, 8);
            wv ^= vv;
            if (wv) {
                j += (int)((unsigned)__builtin_ctzll(wv) >> 3);
                break;
            }
            j += 8;
        }
        add = run_add[v != 0][j - i];
        blf[v] += add[0];
        blf[16] += add[1];
        blf[17] += add[2];
        blf[18] += add[3];
        i = j;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* block accounting                                                                           */

typedef struct {
    uint32_t lf[L_CODES + 2];
    uint32_t df[D_CODES + 2];
    uint32_t nsym;
    uint64_t bits; /* bits of all completed blocks */
} bstate;

static inline void bs_reset_block(bstate *b)
{
    memset(b->lf, 0, sizeof b->lf);
    memset(b->df, 0, sizeof b->df);
    b->lf[256] = 1;
    b->nsym = 0;
}

static inline void bs_init(bstate *b)
{
    bs_reset_block(b);
    b->bits = 0;
}

/*
 * Sizes of the current block as zlib's _tr_flush_block sees them: *opt_out is opt_len (dynamic
 * trees, tree description included), *stat_out is static_len; both without the 3 header bits.
 */
static void block_costs(const uint32_t *lf, const uint32_t *df, int64_t *opt_out, int64_t *stat_out)
{
    hwork w;
    uint32_t blf[BL_CODES + 2];
    uint8_t llen[L_CODES + 16], dlen[D_CODES + 16];
    int64_t opt, stat = 0, xs = 0;
    int k, i, lmax, dmax, blmax, max_blindex;
    PROF_DECL;

    {
        /* sums over whole alphabets (branch-free; a block has < 2^14 symbols, so no overflow) */
        uint32_t st = 0, x = 0, s8 = 0, s9 = 0, s7 = 0;
        /* fixed-code lengths: 8 for 0..143 and 280..287, 9 for 144..255, 7 for 256..279 */
        for (i = 0; i < 144; i++) s8 += lf[i];
        for (i = 144; i < 256; i++) s9 += lf[i];
        for (i = 256; i < 280; i++) s7 += lf[i];
        for (i = 280; i < L_CODES; i++) s8 += lf[i];
        st = 8u * s8 + 9u * s9 + 7u * s7;
        for (i = 0; i < 29; i++) x += lf[257 + i] * lbits_extra[i];
        for (i = 0; i < D_CODES; i++) {
            st += df[i] * 5u;
            x += df[i] * dbits_extra[i];
        }
        stat = (int64_t)st + x;
        xs = x;
    }
    PROF_MARK(4);
    k = used_syms(lf, L_CODES, w.syms);
    opt = huff_lengths(&w, lf, w.syms, k, L_CODES, 15, &lmax);
    memcpy(llen, w.nlen, L_CODES);
    PROF_MARK(5);

    k = used_syms(df, D_CODES, w.syms);
    opt += huff_lengths(&w, df, w.syms, k, D_CODES, 15, &dmax);
    memcpy(dlen, w.nlen, D_CODES);
    opt += xs;
    PROF_MARK(6);

    memset(blf, 0, sizeof blf);
    scan_lengths(llen, lmax, blf);
    scan_lengths(dlen, dmax, blf);
    k = used_syms(blf, BL_CODES, w.syms);
    opt += huff_lengths(&w, blf, w.syms, k, BL_CODES, 7, &blmax);
    for (i = 16; i < BL_CODES; i++) opt += (int64_t)blf[i] * blbits_extra[i]; /* repeat counts */
    for (max_blindex = BL_CODES - 1; max_blindex >= 3; max_blindex--)
        if (w.nlen[bl_rank[max_blindex]] != 0) break;
    opt += 3 * ((int64_t)max_blindex + 1) + 5 + 5 + 4;
    PROF_MARK(7);
    *opt_out = opt;
    *stat_out = stat;
}

/* Ends the current block as zlib's _tr_flush_block would, adding its size to b->bits. */
static void bs_flush(bstate *b, uint64_t stored_len, int have_buf, int last)
{
    int64_t opt, stat;
    uint64_t opt_lenb, static_lenb;
    block_costs(b->lf, b->df, &opt, &stat);
    opt_lenb = ((uint64_t)opt + 3 + 7) >> 3;
    static_lenb = ((uint64_t)stat + 3 + 7) >> 3;
    if (static_lenb <= opt_lenb) opt_lenb = static_lenb;
    if (stored_len + 4 <= opt_lenb && have_buf) {
        b->bits = ((b->bits + 3 + 7) & ~(uint64_t)7) + 32 + 8 * stored_len;
    } else if (static_lenb == opt_lenb) {
        b->bits += 3 + (uint64_t)stat;
    } else {
        b->bits += 3 + (uint64_t)opt;
    }
    if (last) b->bits = (b->bits + 7) & ~(uint64_t)7; /* the frequencies are not used again */
    else bs_reset_block(b);
}

static inline int bs_tally_lit(bstate *b, unsigned c)
{
    b->lf[c]++;
    return ++b->nsym == BLOCK_SYMS;
}

static inline int bs_tally_match(bstate *b, unsigned dist, unsigned len)
{
    b->lf[257 + len_sym[len]]++;
    b->df[dist_sym(dist - 1)]++;
    return ++b->nsym == BLOCK_SYMS;
}

/* ------------------------------------------------------------------------------------------ */
/* flat engine: no slides (total length < SLIDE_AT), absolute positions in one buffer          */

static inline unsigned load_diff_len(const uint8_t *s, const uint8_t *m, unsigned maxl)
{
    unsigned i = 0;
    while (i < maxl) {
        uint64_t a, c;
        memcpy(&a, s + i, 8);
        memcpy(&c, m + i, 8);
        a ^= c;
        if (a) {
            i += (unsigned)__builtin_ctzll(a) >> 3;
            return i < maxl ? i : maxl;
        }
        i += 8;
    }
    return maxl;
}

static inline uint64_t load64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

/*
 * zlib's longest_match at level 1 (chain 4, nice 8, prev_length 2), limited to the data.
 * zlib skips a candidate unless it can beat the best length so far and then measures it;
 * equivalently every candidate is measured and kept when strictly longer.  The first 8 bytes
 * are compared at once (enough to decide everything below nice_match = 8); only the candidate
 * that reaches nice_match is measured further.  buf must be readable 8 bytes past p + la.
 */
static inline unsigned flat_match(const uint8_t *buf, const uint16_t *prev, unsigned p,
                                  unsigned cur, unsigned la, unsigned *mstart)
{
    const uint8_t *s = buf + p;
    unsigned limit = p > MAXDIST ? p - MAXDIST : 0;
    unsigned nice = la < NICE ? la : NICE;
    unsigned best = 2, ms = 0;
    uint64_t sv = load64(s);
    int chain = CHAIN;
    for (;;) {
        uint64_t x = sv ^ load64(buf + cur);
        unsigned cp = x ? (unsigned)__builtin_ctzll(x) >> 3 : 8u;
        cp = cp < nice ? cp : nice;
        ms = cp > best ? cur : ms;
        best = cp > best ? cp : best;
        if (cp >= nice) break;
        cur = prev[cur & WMASK];
        if (cur <= limit || --chain == 0) break;
    }
    if (best == NICE && la > NICE) {
        unsigned maxl = la < MAXM ? la : MAXM;
        best = NICE + load_diff_len(s + NICE, buf + ms + NICE, maxl - NICE);
    }
    *mstart = ms;
    return best;
}

typedef struct {
    uint32_t *v;
    size_t n, cap;
} ulog;

/*
 * Runs zlib's deflate_fast steps on buf[0..total) from step start *pp while the step start is
 * below `until`.  hv[p] is the hash of buf[p..p+2] (for p + 3 <= total; readable up to
 * total + PAD).  Blocks that fill up are flushed into b.  When lg is given, every head[]
 * write is logged as (hash << 16 | old value).
 */
static void flat_run(const uint8_t *buf, const uint16_t *hv, unsigned total, unsigned *pp,
                     unsigned until, unsigned *block_start, uint16_t *head, uint16_t *prev,
                     bstate *b, ulog *lg)
{
    unsigned p = *pp;
    uint32_t *logv = lg ? lg->v + lg->n : NULL;
    while (p < until) {
        unsigned la = total - p, hh = 0, mlen = 0, ms = 0;
        int fl;
        __builtin_prefetch(head + hv[p + PREFETCH_AHEAD]);
        if (la >= MINM) {
            unsigned h = hv[p];
            hh = head[h];
            if (logv) *logv++ = (h << 16) | hh;
            prev[p & WMASK] = (uint16_t)hh;
            head[h] = (uint16_t)p;
        }
        if (hh != 0 && p - hh <= MAXDIST) mlen = flat_match(buf, prev, p, hh, la, &ms);
        if (mlen >= MINM) {
            fl = bs_tally_match(b, p - ms, mlen);
            if (mlen <= MAX_INSERT && la - mlen >= MINM) {
                unsigned q;
                for (q = p + 1; q < p + mlen; q++) {
                    unsigned h = hv[q];
                    unsigned o = head[h];
                    if (logv) *logv++ = (h << 16) | o;
                    prev[q & WMASK] = (uint16_t)o;
                    head[h] = (uint16_t)q;
                }
            }
            p += mlen;
        } else {
            fl = bs_tally_lit(b, buf[p]);
            p++;
        }
        if (fl) {
            bs_flush(b, p - *block_start, 1, 0);
            *block_start = p;
        }
    }
    if (lg) lg->n = (size_t)(logv - lg->v);
    *pp = p;
}

/*
 * Continues the source-only parse of buf[0..L) past the point where a match search can see the
 * end of the source: a step at p is the same whatever follows the source as long as p + 9 <= L
 * (then nice_match is 8 and the hashed and quick-checked bytes are all source bytes) and no
 * candidate comparison runs up to the end of the source.  Stops before the first step that
 * would compare up to buf[L], undoing that step's hash insertion.
 */
static void flat_extend(const uint8_t *buf, const uint16_t *hv, unsigned L, unsigned *pp,
                        unsigned *block_start, uint16_t *head, uint16_t *prev, bstate *b)
{
    unsigned p = *pp;
    while (p + 9 <= L) {
        unsigned la = L - p, hh, mlen = 0, ms = 0, h = hv[p], oldprev = prev[p & WMASK];
        int fl;
        hh = head[h];
        prev[p & WMASK] = (uint16_t)hh;
        head[h] = (uint16_t)p;
        if (hh != 0 && p - hh <= MAXDIST) {
            const uint8_t *s = buf + p;
            unsigned limit = p > MAXDIST ? p - MAXDIST : 0, cur = hh;
            unsigned maxl = la < MAXM ? la : MAXM, best = 2;
            int chain = CHAIN, hit = 0;
            do {
                const uint8_t *m = buf + cur;
                if (m[best] == s[best] && m[best - 1] == s[best - 1] && m[0] == s[0] &&
                    m[1] == s[1]) {
                    unsigned len = load_diff_len(s, m, maxl);
                    if (len == la) { hit = 1; break; } /* reached the end of the source */
                    if (len > best) {
                        ms = cur;
                        best = len;
                        if (len >= NICE) break;
                    }
                }
            } while ((cur = prev[cur & WMASK]) > limit && --chain != 0);
            if (hit) {
                head[h] = (uint16_t)hh;
                prev[p & WMASK] = (uint16_t)oldprev;
                break;
            }
            mlen = best;
        }
        if (mlen >= MINM) {
            fl = bs_tally_match(b, p - ms, mlen);
            if (mlen <= MAX_INSERT) { /* la - mlen >= 5 here */
                unsigned q;
                for (q = p + 1; q < p + mlen; q++) {
                    unsigned hq = hv[q];
                    prev[q & WMASK] = head[hq];
                    head[hq] = (uint16_t)q;
                }
            }
            p += mlen;
        } else {
            fl = bs_tally_lit(b, buf[p]);
            p++;
        }
        if (fl) {
            bs_flush(b, p - *block_start, 1, 0);
            *block_start = p;
        }
    }
    *pp = p;
}

/* ------------------------------------------------------------------------------------------ */
/* window engine: faithful model of zlib's 64 KiB window for inputs of any length             */

typedef struct {
    uint8_t win[WINSZ + 16];
    uint16_t head[HSIZE];
    uint16_t prev[WSIZE];
} wmem;

typedef struct {
    const uint8_t *seg[2];
    size_t seglen[2];
    int si;
    size_t off;
    uint64_t avail;
} instream;

static void in_init(instream *in, const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    in->seg[0] = a;
    in->seglen[0] = alen;
    in->seg[1] = b;
    in->seglen[1] = blen;
    in->off = 0;
    in->avail = (uint64_t)alen + blen;
    in->si = alen ? 0 : blen ? 1 : 2;
}

static unsigned in_read(instream *in, uint8_t *dst, unsigned want)
{
    unsigned got = 0;
    while (got < want && in->si < 2) {
        size_t left = in->seglen[in->si] - in->off;
        size_t take = want - got;
        if (take > left) take = left;
        if (take) memcpy(dst + got, in->seg[in->si] + in->off, take);
        got += (unsigned)take;
        in->off += take;
        if (in->off == in->seglen[in->si]) {
            in->si++;
            in->off = 0;
        }
    }
    in->avail -= got;
    return got;
}

/* everything of the window engine besides its memory */
typedef struct {
    unsigned strstart, lookahead, match_length, match_start;
    long block_start;
    uint64_t high_water;
    uint64_t base;     /* absolute input offset of win[0] */
    uint64_t consumed; /* input bytes read into the window so far */
    bstate b;
} wstate;

static void window_init(wmem *wm, wstate *st)
{
    memset(wm->head, 0, sizeof wm->head);
    st->strstart = st->lookahead = st->match_start = 0;
    st->match_length = MINM - 1;
    st->block_start = 0;
    st->high_water = 0;
    st->base = 0;
    st->consumed = 0;
    bs_init(&st->b);
}

/*
 * Runs deflate_fast steps reading from `in`.  Stops before the first step whose absolute start
 * p has p + MIN_LOOK > stop_at (returns 1), or at the end of the input after the final block
 * (returns 0).
 */
static int window_run(wmem *wm, wstate *st, instream *in, uint64_t stop_at)
{
    uint8_t *win = wm->win;
    uint16_t *head = wm->head, *prev = wm->prev;
    unsigned strstart = st->strstart, lookahead = st->lookahead;
    unsigned match_length = st->match_length, match_start = st->match_start;
    long block_start = st->block_start;
    uint64_t high_water = st->high_water;
    bstate *b = &st->b;
    int stopped = 0;

    for (;;) {
        if (st->base + strstart + MIN_LOOK > stop_at) {
            stopped = 1;
            break;
        }
        if (lookahead < MIN_LOOK) {
            /* fill_window */
            do {
                unsigned more = WINSZ - lookahead - strstart;
                if (strstart >= SLIDE_AT) {
                    unsigned n;
                    memcpy(win, win + WSIZE, WSIZE - more);
                    match_start -= WSIZE;
                    strstart -= WSIZE;
                    block_start -= (long)WSIZE;
                    st->base += WSIZE;
                    for (n = 0; n < HSIZE; n++)
                        head[n] = (uint16_t)(head[n] >= WSIZE ? head[n] - WSIZE : 0);
                    for (n = 0; n < WSIZE; n++)
                        prev[n] = (uint16_t)(prev[n] >= WSIZE ? prev[n] - WSIZE : 0);
                    more += WSIZE;
                }
                if (in->avail == 0) break;
                {
                    unsigned got = in_read(in, win + strstart + lookahead, more);
                    lookahead += got;
                    st->consumed += got;
                }
            } while (lookahead < MIN_LOOK && in->avail != 0);
            if (high_water < WINSZ) {
                uint64_t curr = (uint64_t)strstart + lookahead, init;
                if (high_water < curr) {
                    init = WINSZ - curr;
                    if (init > MAXM) init = MAXM;
                    memset(win + curr, 0, (size_t)init);
                    high_water = curr + init;
                } else if (high_water < curr + MAXM) {
                    init = curr + MAXM - high_water;
                    if (init > WINSZ - high_water) init = WINSZ - high_water;
                    memset(win + high_water, 0, (size_t)init);
                    high_water += init;
                }
            }
            if (lookahead == 0) break;
        }
        {
            unsigned hh = 0;
            int fl;
            if (lookahead >= MINM) {
                unsigned h = hash3(win + strstart);
                hh = head[h];
                prev[strstart & WMASK] = (uint16_t)hh;
                head[h] = (uint16_t)strstart;
            }
            if (hh != 0 && strstart - hh <= MAXDIST) {
                /* longest_match, reading the window as zlib does (possibly past the data) */
                const uint8_t *sp = win + strstart;
                unsigned limit = strstart > MAXDIST ? strstart - MAXDIST : 0;
                unsigned nice = lookahead < NICE ? lookahead : NICE;
                unsigned best = MINM - 1, cur = hh;
                int chain = CHAIN;
                do {
                    const uint8_t *m = win + cur;
                    if (m[best] == sp[best] && m[best - 1] == sp[best - 1] && m[0] == sp[0] &&
                        m[1] == sp[1]) {
                        unsigned len = 3;
                        while (len < MAXM && sp[len] == m[len]) len++;
                        if (len > best) {
                            match_start = cur;
                            best = len;
                            if (len >= nice) break;
                        }
                    }
                } while ((cur = prev[cur & WMASK]) > limit && --chain != 0);
                match_length = best <= lookahead ? best : lookahead;
            }
            if (match_length >= MINM) {
                fl = bs_tally_match(b, strstart - match_start, match_length);
                lookahead -= match_length;
                if (match_length <= MAX_INSERT && lookahead >= MINM) {
                    match_length--;
                    do {
                        unsigned h;
                        strstart++;
                        h = hash3(win + strstart);
                        prev[strstart & WMASK] = head[h];
                        head[h] = (uint16_t)strstart;
                    } while (--match_length != 0);
                    strstart++;
                } else {
                    strstart += match_length;
                    match_length = 0;
                }
            } else {
                fl = bs_tally_lit(b, win[strstart]);
                lookahead--;
                strstart++;
            }
            if (fl) {
                bs_flush(b, (uint64_t)((long)strstart - block_start), block_start >= 0, 0);
                block_start = (long)strstart;
            }
        }
    }
    if (!stopped) bs_flush(b, (uint64_t)((long)strstart - block_start), block_start >= 0, 1);
    st->strstart = strstart;
    st->lookahead = lookahead;
    st->match_length = match_length;
    st->match_start = match_start;
    st->block_start = block_start;
    st->high_water = high_water;
    return stopped;
}

/* raw deflate bits of a||b with the window engine, from scratch */
static uint64_t window_bits(wmem *wm, const uint8_t *a, size_t alen, const uint8_t *bb, size_t blen)
{
    wstate st;
    instream in;
    window_init(wm, &st);
    in_init(&in, a, alen, bb, blen);
    window_run(wm, &st, &in, UINT64_MAX);
    return st.b.bits;
}

/*
 * The window engine's state after the source x alone, stopped before the first step whose
 * start p has p + MIN_LOOK > |x|.  Up to there every step only looks at source bytes, and
 * fill_window is called at the same steps and reads the same source bytes whatever follows x,
 * so the state is the same for every target except for what lies past x in the window.
 */
static void window_snapshot(wmem *wm, wstate *st, const uint8_t *x, size_t L)
{
    instream in;
    window_init(wm, st);
    in_init(&in, x, L, NULL, 0);
    window_run(wm, st, &in, (uint64_t)L);
}

/* raw deflate bits of x||y resumed from window_snapshot(x) (copied into wm/st) */
static uint64_t window_resume(wmem *wm, wstate *st, const uint8_t *x, size_t L, const uint8_t *y,
                              size_t yl)
{
    instream in;
    if (st->consumed == (uint64_t)L) {
        /* the read that reached the end of x would have gone on into y, up to the window end */
        unsigned end = st->strstart + st->lookahead;
        size_t room = WINSZ - end, n = yl < room ? yl : room;
        if (n) memcpy(wm->win + end, y, n);
        st->lookahead += (unsigned)n;
        st->consumed += n;
        in_init(&in, y + n, yl - n, NULL, 0);
    } else {
        in_init(&in, x + st->consumed, L - (size_t)st->consumed, y, yl);
    }
    window_run(wm, st, &in, UINT64_MAX);
    return st->b.bits;
}

/* ------------------------------------------------------------------------------------------ */
/* per-call scratch                                                                           */

typedef struct scratch {
    struct scratch *next;
    uint16_t head[HSIZE];
    uint16_t prev[WSIZE];
    uint16_t psave[WSIZE];
    uint8_t *buf;
    size_t bufcap;
    uint16_t *hv; /* hash of buf[p..p+2] per position */
    size_t hvcap;
    ulog lg;
    wmem *wm;    /* window engine memory */
    wmem *wsnap; /* window engine snapshot of the current source (long inputs) */
    wstate wst;  /* its state */
    int wsnap_ok;
} scratch;

static scratch *scratch_new(void)
{
    scratch *s = (scratch *)calloc(1, sizeof(scratch));
    return s;
}

static void scratch_free(scratch *s)
{
    if (!s) return;
    free(s->buf);
    free(s->hv);
    free(s->lg.v);
    free(s->wm);
    free(s->wsnap);
    free(s);
}

static int scratch_reserve(scratch *s, size_t buflen, size_t logn)
{
    if (s->bufcap < buflen) {
        uint8_t *nb = (uint8_t *)realloc(s->buf, buflen);
        if (!nb) return -1;
        s->buf = nb;
        s->bufcap = buflen;
    }
    if (s->hvcap < buflen) {
        uint16_t *nh = (uint16_t *)realloc(s->hv, buflen * sizeof(uint16_t));
        if (!nh) return -1;
        s->hv = nh;
        s->hvcap = buflen;
    }
    if (s->lg.cap < logn) {
        uint32_t *nv = (uint32_t *)realloc(s->lg.v, logn * sizeof(uint32_t));
        if (!nv) return -1;
        s->lg.v = nv;
        s->lg.cap = logn;
    }
    return 0;
}

/* hv[p] = hash of buf[p..p+2] for p in [from, to), to <= len - 2 ... zero-padded up to pad_to */
static void fill_hashes(const uint8_t *buf, uint16_t *hv, size_t from, size_t len, size_t pad_to)
{
    size_t p;
    for (p = from; p + 2 < len; p++) hv[p] = (uint16_t)hash3(buf + p);
    for (; p < pad_to; p++) hv[p] = 0;
}

static wmem *scratch_wmem(scratch *s)
{
    if (!s->wm) s->wm = (wmem *)calloc(1, sizeof(wmem));
    return s->wm;
}

/* total deflate bytes (raw) for the concatenation a||b, any length; -1 on memory failure */
/*
 * Raw deflate bytes of a||b from scratch; -1 when out of memory.  Expects s->head all zero and
 * leaves it so (only the entries of hashed strings are touched, and reset afterwards).
 */
static int64_t raw_len_any(scratch *s, const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    uint64_t total = (uint64_t)alen + blen;
    if (total < SLIDE_AT) {
        unsigned p = 0, bs0 = 0, q;
        bstate st;
        if (scratch_reserve(s, (size_t)total + PAD, 0)) return -1;
        if (alen) memcpy(s->buf, a, alen);
        if (blen) memcpy(s->buf + alen, b, blen);
        fill_hashes(s->buf, s->hv, 0, (size_t)total, (size_t)total + PAD);
        bs_init(&st);
        flat_run(s->buf, s->hv, (unsigned)total, &p, (unsigned)total, &bs0, s->head, s->prev, &st,
                 NULL);
        bs_flush(&st, (uint64_t)(total - bs0), 1, 1);
        for (q = 0; q + 2 < (unsigned)total; q++) s->head[s->hv[q]] = 0;
        return (int64_t)(st.bits >> 3);
    } else {
        wmem *wm = scratch_wmem(s);
        if (!wm) return -1;
        return (int64_t)(window_bits(wm, a, alen, b, blen) >> 3);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Python: gzip1_length                                                                       */

#define GZIP_OVERHEAD 18

/* scratch for gzip1_length: a small free list (head tables kept all zero), shared by threads */
#define SINGLE_POOL_MAX 8
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

/* back to the free list; r < 0: raw_len_any failed and may have left head entries set */
static void single_put(scratch *s, int64_t r)
{
    if (r < 0) memset(s->head, 0, sizeof s->head);
    PyThread_acquire_lock(single_lock, WAIT_LOCK);
    if (single_pooled < SINGLE_POOL_MAX) {
        s->next = single_pool;
        single_pool = s;
        single_pooled++;
        s = NULL;
    }
    PyThread_release_lock(single_lock);
    scratch_free(s);
}

static PyObject *py_gzip1_length(PyObject *self, PyObject *arg)
{
    Py_buffer view;
    scratch *s;
    int64_t r;
    (void)self;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    s = single_get();
    if (!s) {
        PyBuffer_Release(&view);
        return PyErr_NoMemory();
    }
    Py_BEGIN_ALLOW_THREADS
    r = raw_len_any(s, (const uint8_t *)view.buf, (size_t)view.len, NULL, 0);
    Py_END_ALLOW_THREADS
    single_put(s, r);
    PyBuffer_Release(&view);
    if (r < 0) return PyErr_NoMemory();
    return PyLong_FromLongLong((long long)r + GZIP_OVERHEAD);
}

/* faithful window engine on any input (for tests) */
static PyObject *py_window_length(PyObject *self, PyObject *arg)
{
    Py_buffer view;
    wmem *wm;
    uint64_t bits;
    (void)self;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    wm = (wmem *)calloc(1, sizeof(wmem));
    if (!wm) {
        PyBuffer_Release(&view);
        return PyErr_NoMemory();
    }
    Py_BEGIN_ALLOW_THREADS
    bits = window_bits(wm, (const uint8_t *)view.buf, (size_t)view.len, NULL, 0);
    Py_END_ALLOW_THREADS
    free(wm);
    PyBuffer_Release(&view);
    return PyLong_FromLongLong((long long)(bits >> 3) + GZIP_OVERHEAD);
}

/* ------------------------------------------------------------------------------------------ */
/* Python: Gzip1Targets                                                                       */

typedef struct {
    PyObject_HEAD
    Py_ssize_t n;
    uint8_t *arena;
    uint16_t *thash; /* per target byte q: hash of t[q..q+2] */
    size_t *off;
    size_t *len;
    size_t maxlen;
    int64_t *tlen; /* len(gzip.compress(t, 1)) per target, for alignment() */
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
    free(self->thash);
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
    size_t total = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O:Gzip1Targets", kwlist, &seq)) return -1;
    if (self->arena || self->off) {
        PyErr_SetString(PyExc_RuntimeError, "Gzip1Targets already initialised");
        return -1;
    }
    if (copy_targets(seq, (size_t)PY_SSIZE_T_MAX, "Gzip1Targets", &self->arena, &self->off, &self->len, &n,
                     &total, &self->maxlen) < 0)
        return -1;
    self->thash = (uint16_t *)malloc(sizeof(uint16_t) * (total ? total : 1));
    if (!self->thash) {
        PyErr_NoMemory();
        return -1;
    }
    for (i = 0; i < n; i++)
        fill_hashes(self->arena + self->off[i], self->thash + self->off[i], 0, self->len[i], self->len[i]);
    self->n = n;
    self->lock = PyThread_allocate_lock();
    self->tlen = (int64_t *)malloc(sizeof(int64_t) * (size_t)(n ? n : 1));
    if (!self->lock || !self->tlen) {
        PyErr_NoMemory();
        return -1;
    }
    {
        scratch *s = scratch_new();
        if (!s) {
            PyErr_NoMemory();
            return -1;
        }
        for (i = 0; i < n; i++) {
            int64_t r = raw_len_any(s, self->arena + self->off[i], self->len[i], NULL, 0);
            if (r < 0) {
                scratch_free(s);
                PyErr_NoMemory();
                return -1;
            }
            self->tlen[i] = r + GZIP_OVERHEAD;
        }
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
    if (!s) s = scratch_new();
    return s;
}

static void pool_put(TargetsObject *self, scratch *s)
{
    PyThread_acquire_lock(self->lock, WAIT_LOCK);
    s->next = self->pool;
    self->pool = s;
    PyThread_release_lock(self->lock);
}

/* compute all lengths (raw deflate bytes) for source x; 0 ok, -1 memory */
/*
 * Raw deflate bytes of x||y when zlib's window will slide (|x| + |y| >= SLIDE_AT): the window
 * engine resumed from a per-source snapshot (made on first use, s->wsnap_ok reset per source).
 */
static int64_t long_pair(scratch *s, const uint8_t *x, size_t L, const uint8_t *y, size_t yl)
{
    wstate st;
    if (!s->wm) s->wm = (wmem *)calloc(1, sizeof(wmem));
    if (!s->wsnap) s->wsnap = (wmem *)calloc(1, sizeof(wmem));
    if (!s->wm || !s->wsnap) return -1;
    if (!s->wsnap_ok) {
        window_snapshot(s->wsnap, &s->wst, x, L);
        s->wsnap_ok = 1;
    }
    memcpy(s->wm, s->wsnap, sizeof(wmem));
    st = s->wst;
    return (int64_t)(window_resume(s->wm, &st, x, L, y, yl) >> 3);
}

/*
 * One pair of the flat path: the parse of x (up to P, blocks up to bstart0 already in b0)
 * resumed over the target y (yl bytes, yhash its own string hashes) to the end of x||y, the
 * final block costed; returns the raw deflate bytes.  head[] and prev[] are left as the parse
 * of x left them (head writes undone from the log, prev entries past a wrap restored).  With
 * yl = 0 this is the raw deflate length of x alone.
 */
static int64_t resume_flat(scratch *s, size_t L, unsigned P, unsigned bstart0, const bstate *b0,
                           const uint8_t *y, const uint16_t *yhash, size_t yl)
{
    unsigned p = P, bst = bstart0, Nu = (unsigned)(L + yl);
    unsigned psave_lo = 0, psave_n = 0;
    size_t k;
    bstate b;
    int64_t r;
    PROF_DECL;
    if (yl) memcpy(s->buf + L, y, yl);
    /* hashes: the two strings across the seam, then the target's own, then zeros */
    {
        size_t p0 = L >= 2 ? L - 2 : 0, q;
        for (q = p0; q < L && q + 2 < (size_t)Nu; q++)
            s->hv[q] = (uint16_t)hash3(s->buf + q);
        if (yl > 2)
            memcpy(s->hv + L, yhash, (yl - 2) * sizeof(uint16_t));
        q = L + (yl > 2 ? yl - 2 : 0);
        if (q < L) q = L;
        memset(s->hv + q, 0, (PAD - 8) * sizeof(uint16_t));
    }
    memcpy(&b, b0, sizeof b);
    if (Nu > WSIZE) {
        unsigned lo = P > WSIZE ? P : WSIZE;
        psave_lo = lo - WSIZE;
        psave_n = Nu - lo;
        memcpy(s->psave, s->prev + psave_lo, psave_n * sizeof(uint16_t));
    }
    s->lg.n = 0;
    PROF_MARK(1);
    flat_run(s->buf, s->hv, Nu, &p, Nu, &bst, s->head, s->prev, &b, &s->lg);
    PROF_MARK(2);
    bs_flush(&b, (uint64_t)(Nu - bst), 1, 1);
    r = (int64_t)(b.bits >> 3);
#ifdef GZIP1_PROFILE
    prof_t0_ = __rdtsc();
#endif
    for (k = s->lg.n; k-- > 0;) {
        uint32_t e = s->lg.v[k];
        s->head[e >> 16] = (uint16_t)(e & 0xffffu);
    }
    if (psave_n) memcpy(s->prev + psave_lo, s->psave, psave_n * sizeof(uint16_t));
    PROF_MARK(3);
    return r;
}

/*
 * Back to an all-zero s->head after the flat path's parse of x (L bytes): every head[] entry
 * it set is the hash of a string wholly inside x (the pairs undo their own), so those are
 * cleared, or the whole table when that is fewer stores.  A Targets scratch keeps s->head all
 * zero between calls (calloc'd at first), so no per-document clearing of 64 KiB.
 */
static void clear_source(scratch *s, size_t L)
{
    size_t q;
    if (L > HSIZE / 4) {
        memset(s->head, 0, sizeof s->head);
        return;
    }
    for (q = 0; q + 2 < L; q++) s->head[s->hv[q]] = 0;
}

/*
 * out[j] = raw deflate bytes of x||t_j for every target.  cx, when given: set to the raw
 * deflate bytes of x alone where the flat path runs (x shorter than SLIDE_AT; the resume
 * with an empty target, so x is parsed once for all of them), left as it is otherwise.
 */
static int compute_all(TargetsObject *self, scratch *s, const uint8_t *x, size_t L, int64_t *out,
                       int64_t *cx)
{
    Py_ssize_t j;
    s->wsnap_ok = 0;
    if ((uint64_t)L >= SLIDE_AT) {
        for (j = 0; j < self->n; j++) {
            int64_t r = long_pair(s, x, L, self->arena + self->off[j], self->len[j]);
            if (r < 0) return -1;
            out[j] = r;
        }
        return 0;
    }
    {
        unsigned P = 0, bstart0 = 0, Lu = (unsigned)L;
        bstate b0;
        /* targets that make x||y reach SLIDE_AT go to long_pair, so the flat buffers never need
           more than SLIDE_AT bytes of data */
        size_t ymax = self->maxlen < SLIDE_AT - L ? self->maxlen : SLIDE_AT - L;
        if (scratch_reserve(s, L + ymax + PAD, 2 * (ymax + MAXM + 16))) return -1;
        memcpy(s->buf, x, L);
        fill_hashes(s->buf, s->hv, 0, L, L + PAD);
        PROF_DECL; /* s->head is all zero here (see clear_source) */
        bs_init(&b0);
        if (Lu > MAXM)
            flat_run(s->buf, s->hv, Lu, &P, Lu - MAXM + 1, &bstart0, s->head, s->prev, &b0, NULL);
        flat_extend(s->buf, s->hv, Lu, &P, &bstart0, s->head, s->prev, &b0);
        PROF_MARK(0);
        if (cx) *cx = resume_flat(s, L, P, bstart0, &b0, NULL, NULL, 0);
        for (j = 0; j < self->n; j++) {
            size_t yl = self->len[j];
            if ((uint64_t)L + yl >= SLIDE_AT) {
                int64_t r = long_pair(s, x, L, self->arena + self->off[j], yl);
                if (r < 0) {
                    clear_source(s, L);
                    return -1;
                }
                out[j] = r;
                continue;
            }
            out[j] = resume_flat(s, L, P, bstart0, &b0, self->arena + self->off[j],
                                 self->thash + self->off[j], yl);
        }
        clear_source(s, L);
    }
    return 0;
}

static PyObject *targets_concat_lengths(TargetsObject *self, PyObject *arg)
{
    Py_buffer view;
    scratch *s;
    int64_t *out;
    int rc;
    PyObject *list;
    if (!self->lock) {
        PyErr_SetString(PyExc_RuntimeError, "Gzip1Targets.__init__ was not called");
        return NULL;
    }
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    out = (int64_t *)malloc(sizeof(int64_t) * (size_t)(self->n ? self->n : 1));
    s = pool_get(self);
    if (!out || !s) {
        free(out);
        if (s) pool_put(self, s);
        PyBuffer_Release(&view);
        return PyErr_NoMemory();
    }
    Py_BEGIN_ALLOW_THREADS
    rc = compute_all(self, s, (const uint8_t *)view.buf, (size_t)view.len, out, NULL);
    Py_END_ALLOW_THREADS
    pool_put(self, s);
    PyBuffer_Release(&view);
    if (rc < 0) {
        free(out);
        return PyErr_NoMemory();
    }
    list = int64_list(out, self->n, GZIP_OVERHEAD);
    free(out);
    return list;
}

/*
 * alignment(source) = 1 - mean_j NCD(source, t_j), bit-identical to ncd.TargetSet.alignment in
 * Python (ncd_alignment, _alignment.h), one GIL release.  alignment_nogil is the contract of
 * _alignment.h (never ALIGN_NOT_HANDLED here): no Python objects, no GIL (its scratch pools have
 * their own locks); other extensions call it through its capsule (_docwork.c scores whole
 * batches in one GIL release with it).
 */
static int alignment_nogil(PyObject *targets, const uint8_t *x, size_t L, double *result)
{
    TargetsObject *self = (TargetsObject *)targets;
    scratch *s, *s1;
    int64_t *out, cx;
    int rc = 0;
    if (!self->lock || self->n == 0) return ALIGN_NO_TARGETS;
    out = (int64_t *)malloc(sizeof(int64_t) * (size_t)self->n);
    s = pool_get(self);
    if (!out || !s) {
        free(out);
        if (s) pool_put(self, s);
        return ALIGN_NO_MEMORY;
    }
    cx = -1; /* C(x): from the pairs' own parse of x on the flat path, else on its own */
    rc = compute_all(self, s, x, L, out, &cx);
    pool_put(self, s);
    if (rc >= 0 && cx < 0 && (s1 = single_get()) != NULL) {
        cx = raw_len_any(s1, x, L, NULL, 0);
        single_put(s1, cx);
    }
    if (cx >= 0 && rc >= 0) *result = ncd_alignment(cx + GZIP_OVERHEAD, self->tlen, out, GZIP_OVERHEAD, self->n);
    free(out);
    return (cx < 0 || rc < 0) ? ALIGN_NO_MEMORY : ALIGN_OK;
}

static PyObject *targets_alignment(TargetsObject *self, PyObject *arg)
{
    return alignment_method((PyObject *)self, arg, alignment_nogil, self->lock != NULL, self->n,
                            "Gzip1Targets");
}

static PyObject *targets_len_(TargetsObject *self, void *closure)
{
    (void)closure;
    return PyLong_FromSsize_t(self->n);
}

static PyMethodDef targets_methods[] = {
    {"concat_lengths", (PyCFunction)targets_concat_lengths, METH_O,
     "concat_lengths(source) -> list of len(gzip.compress(source + t, 1)) for every target t"},
    {"alignment", (PyCFunction)targets_alignment, METH_O,
     "alignment(source) -> 1 - mean NCD(source, t) over the targets, as ncd.TargetSet.alignment"},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef targets_getset[] = {
    {"n", (getter)targets_len_, NULL, "number of targets", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

static PyTypeObject TargetsType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "zipfit_beam._gzip1.Gzip1Targets",
    .tp_basicsize = sizeof(TargetsObject),
    .tp_dealloc = (destructor)targets_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Gzip1Targets(targets): a fixed list of byte strings, prepared once; "
              "concat_lengths(source) gives len(gzip.compress(source + t, 1)) for each.",
    .tp_methods = targets_methods,
    .tp_getset = targets_getset,
    .tp_init = (initproc)targets_init,
    .tp_new = PyType_GenericNew,
};

#ifdef GZIP1_PROFILE
static PyObject *py_prof(PyObject *self, PyObject *noarg)
{
    PyObject *l = PyList_New(16);
    int i;
    (void)self; (void)noarg;
    for (i = 0; i < 16; i++) {
        PyList_SET_ITEM(l, i, Py_BuildValue("(KK)", (unsigned long long)prof_cyc[i],
                                            (unsigned long long)prof_cnt[i]));
        prof_cyc[i] = prof_cnt[i] = 0;
    }
    return l;
}
#endif

static PyMethodDef module_methods[] = {
#ifdef GZIP1_PROFILE
    {"_prof", (PyCFunction)py_prof, METH_NOARGS, "profile counters (GZIP1_PROFILE builds)"},
#endif
    {"gzip1_length", (PyCFunction)py_gzip1_length, METH_O,
     "gzip1_length(data) -> len(gzip.compress(data, 1))"},
    {"_window_length", (PyCFunction)py_window_length, METH_O,
     "testing aid: gzip1_length computed with the sliding-window engine only"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "_gzip1",
    "Exact gzip level-1 compressed lengths (zlib 1.2.13 level 1).", -1, module_methods,
    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__gzip1(void)
{
    PyObject *m, *compat;
    init_tables();
    init_run_table();
    if (!single_lock) single_lock = PyThread_allocate_lock();
    if (!single_lock) return PyErr_NoMemory();
    if (PyType_Ready(&TargetsType) < 0) return NULL;
    m = PyModule_Create(&moduledef);
    if (!m) return NULL;
    Py_INCREF(&TargetsType);
    if (PyModule_AddObject(m, "Gzip1Targets", (PyObject *)&TargetsType) < 0) {
        Py_DECREF(&TargetsType);
        Py_DECREF(m);
        return NULL;
    }
    compat = Py_BuildValue("(ssssss)", "1.2.11", "1.2.12", "1.2.13", "1.3", "1.3.1", "1.3.2");
    if (!compat || PyModule_AddObject(m, "ZLIB_COMPAT", compat) < 0) {
        Py_XDECREF(compat);
        Py_DECREF(m);
        return NULL;
    }
    {
        /* alignment_fn over a Gzip1Targets (_alignment.h) */
        PyObject *cap = PyCapsule_New((void *)alignment_nogil,
                                      "zipfit_beam.score._gzip1." ALIGNMENT_CAPSULE_ATTR, NULL);
        if (!cap || PyModule_AddObject(m, ALIGNMENT_CAPSULE_ATTR, cap) < 0) {
            Py_XDECREF(cap);
            Py_DECREF(m);
            return NULL;
        }
    }
    return m;
}
