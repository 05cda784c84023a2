/* recurrent_mm.c -- the per-step product of the recurrent sequence kernels.
 *
 * Every step of a sequence multiplies a few rows (the batch, B = 1..64) by the
 * same recurrent weight matrix:
 *
 *   forward   a_t   (B, G*H) += h_{t-1} (B, H)    @ W_hh^T (H, G*H)
 *   backward  dh    (B, H)    = dgates_t (B, G*H) @ W_hh   (G*H, H)
 *
 * A general GEMM pays its dispatch, blocking and edge logic at every one of
 * the T calls.  Here the right-hand operand is packed ONCE per sequence
 * (panel_pack_*) into column panels of one vector width VL,
 *
 *   P[q][k][0:VL] = op(W)[k, q*VL : q*VL + VL]      (zero-padded past N),
 *
 * each panel a contiguous, 64-byte aligned (K, VL) block, and every step calls
 * panel_mm_* : a register tile of mr rows x np panels (mr*np vector
 * accumulators) walks the depth K once, reading one vector of each of its np
 * panels per k and broadcasting one element of each of its mr rows of A.
 * Panels are the outer loop and row groups the inner one, so a panel group is
 * fetched from L2/L3 once per step and reused from L1 by every row group
 * (that matters when W_hh is larger than L2: H = 512).
 *
 * The tile is chosen per instruction set and compiled with target attributes
 * (AVX-512F, AVX2+FMA, baseline SSE2); the runtime's instruction set
 * (tb_isa) picks one, so the default build stays portable.  The typed entry
 * points (panel_pack, panel_mm, the tests' tb_recurrent_mm and its plain-loop
 * reference tb_recurrent_mm_ref) are the template recurrent_mm_impl.h,
 * instantiated at the end of this file.
 *
 * Private to the recurrent kernels: declared in recurrent_common.h and
 * recurrent_impl.h.
 */
#include <stdlib.h>
#include <string.h>
#include "recurrent_common.h"

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#define MM_X86 1
#include <immintrin.h>
#endif

#define MM_INL static inline __attribute__((always_inline))

/* ------------------------------------------------------------------ */
/* Threads                                                            */
/* ------------------------------------------------------------------ */
/* How many threads a product of `work` multiply-adds over `groups` panel groups
   gets: tb_threads_for's answer (runtime.c), at most one per panel group.
   `bytes` counts A and C, the operands a step rewrites: the packed weights
   stay in each core's cache from step to step (each thread takes the same
   panel groups at every step). */
#ifdef _OPENMP
#include <omp.h>
static int mm_threads(double work, double bytes, long groups)
{
    int nt = tb_threads_for(work, bytes);
    return nt < groups ? nt : (int)groups;
}
#define MM_OMP_PARALLEL(nt, ...)                                                    \
    do {                                                                            \
        _Pragma("omp parallel num_threads(nt)")                                     \
        {                                                                           \
            long nt_ = omp_get_num_threads(), id_ = omp_get_thread_num();           \
            __VA_ARGS__                                                             \
        }                                                                           \
    } while (0)
#else
static int mm_threads(double work, double bytes, long groups) { (void)work; (void)bytes; (void)groups; return 1; }
#define MM_OMP_PARALLEL(nt, ...) do { long nt_ = 1, id_ = 0; __VA_ARGS__ } while (0)
#endif

/* ------------------------------------------------------------------ */
/* Tiles                                                              */
/* ------------------------------------------------------------------ */
/* MM_TILE(...) defines, for one instruction set and dtype, the always-inline
   tile body mm_tile_<SUF>_<tag>(mr, np, ...) -- mr and np are literals at
   every call site, the loops over them are unrolled, and the mr*np
   accumulators live in registers -- and the driver mm_<SUF>_<tag>.
   Vocabulary: V vector type, VL lanes, LOAD (aligned), LOADU, STOREU, SET1,
   ZERO, FMA(a, b, c) = a*b + c.
   Tile shapes: M <= MRA rows use MRA x NPA (at most); more rows are cut into
   groups of MRB rows with NPB panels. */

#define MM_CASE(tag, SUF, mr, np)                                                   \
    case (mr) * 8 + (np):                                                           \
        mm_tile_##SUF##_##tag(mr, np, K, A, lda, Pq, qs, ks, C, ldc, acc, init);    \
        break;
#define MM_CASES_NP(tag, SUF, mr)                                                   \
    MM_CASE(tag, SUF, mr, 1) MM_CASE(tag, SUF, mr, 2) MM_CASE(tag, SUF, mr, 3) MM_CASE(tag, SUF, mr, 4)

/* The tile: C[0:mr, 0:np*VL] = [C] + [init] + A[0:mr, 0:K] @ op(W)[0:K, panels 0..np-1],
   op(W)[k, q*VL + j] = P[q*qs + k*ks + j].  Packed panels: qs = K*VL, ks = VL;
   W read in place (op(W) = W, N a multiple of VL): qs = VL, ks = ldw.
   A tile with few accumulators (mr*np < 8: one row, B = 1) would wait on the
   FMA latency at every k, so it keeps S = 2 or 4 partial sums over
   interleaved k and adds them at the end.
   C and init join the sum at the end, not at the start: in a sequence
   forward whose input projection is one GEMM before the loop (the GRU's),
   C is this step's slice of it, written long ago and out of
   cache, and a tile that starts by loading it waits on memory before its
   first FMA.  Prefetched at the start and read at the end, the load hides
   behind the K loop (Zen 4, M = 32, N = K = 256: the product 107 -> 112
   GFLOP/s; the RNN's sequence forward at T = 100, B = 32, I = H = 256,
   then built that way: 9.7 -> 8.9 ms). */
#define MM_TILE(real, SUF, tag, ATTR, V, VL, LOADU, STOREU, SET1, ZERO, FMA, ADD,   \
                MRA, NPA, MRB, NPB)                                                 \
MM_INL ATTR void mm_tile_##SUF##_##tag(const int mr, const int np, long K,          \
                                       const real *restrict A, long lda,            \
                                       const real *restrict P, long qs, long ks,    \
                                       real *restrict C, long ldc,                  \
                                       int acc, const real *restrict init)          \
{                                                                                   \
    const int S = mr * np >= 8 ? 1 : mr * np >= 4 ? 2 : 4;                          \
    V c[4][8][4];                                                                   \
    _Pragma("GCC unroll 8")                                                         \
    for (int r = 0; r < mr; r++) {                                                  \
        _Pragma("GCC unroll 4")                                                     \
        for (int q = 0; q < np; q++) {                                              \
            if (acc) TB_PREFETCH(C + r * ldc + q * VL);                                \
            _Pragma("GCC unroll 4")                                                 \
            for (int u = 0; u < S; u++) c[u][r][q] = ZERO();                        \
        }                                                                           \
    }                                                                               \
    long k = 0;                                                                     \
    for (; k + S <= K; k += S) {                                                    \
        _Pragma("GCC unroll 4")                                                     \
        for (int u = 0; u < S; u++) {                                               \
            V w[4];                                                                 \
            _Pragma("GCC unroll 4")                                                 \
            for (int q = 0; q < np; q++) w[q] = LOADU(P + q * qs + (k + u) * ks);   \
            _Pragma("GCC unroll 8")                                                 \
            for (int r = 0; r < mr; r++) {                                          \
                V a = SET1(A[r * lda + k + u]);                                     \
                _Pragma("GCC unroll 4")                                             \
                for (int q = 0; q < np; q++) c[u][r][q] = FMA(a, w[q], c[u][r][q]); \
            }                                                                       \
        }                                                                           \
    }                                                                               \
    for (; k < K; k++) {                                                            \
        V w[4];                                                                     \
        _Pragma("GCC unroll 4")                                                     \
        for (int q = 0; q < np; q++) w[q] = LOADU(P + q * qs + k * ks);             \
        _Pragma("GCC unroll 8")                                                     \
        for (int r = 0; r < mr; r++) {                                              \
            V a = SET1(A[r * lda + k]);                                             \
            _Pragma("GCC unroll 4")                                                 \
            for (int q = 0; q < np; q++) c[0][r][q] = FMA(a, w[q], c[0][r][q]);     \
        }                                                                           \
    }                                                                               \
    _Pragma("GCC unroll 8")                                                         \
    for (int r = 0; r < mr; r++) {                                                  \
        _Pragma("GCC unroll 4")                                                     \
        for (int q = 0; q < np; q++) {                                              \
            if (S == 4) c[0][r][q] = ADD(ADD(c[0][r][q], c[1][r][q]), ADD(c[2][r][q], c[3][r][q])); \
            if (S == 2) c[0][r][q] = ADD(c[0][r][q], c[1][r][q]);                   \
            if (acc) c[0][r][q] = ADD(c[0][r][q], LOADU(C + r * ldc + q * VL));     \
            if (init) c[0][r][q] = ADD(c[0][r][q], LOADU(init + q * VL));           \
            STOREU(C + r * ldc + q * VL, c[0][r][q]);                               \
        }                                                                           \
    }                                                                               \
}                                                                                   \
/* One tile, by run-time (mr, np) -> the compile-time instance. */                  \
static ATTR void mm_tile_any_##SUF##_##tag(int mr, int np, long K,                  \
                                           const real *A, long lda,                 \
                                           const real *Pq, long qs, long ks,        \
                                           real *C, long ldc,                       \
                                           int acc, const real *init)               \
{                                                                                   \
    switch (mr * 8 + np) {                                                          \
    MM_CASES_NP(tag, SUF, 1) MM_CASES_NP(tag, SUF, 2)                               \
    MM_CASES_NP(tag, SUF, 3) MM_CASES_NP(tag, SUF, 4)                               \
    MM_CASE(tag, SUF, 5, 1) MM_CASE(tag, SUF, 5, 2)                                 \
    MM_CASE(tag, SUF, 6, 1) MM_CASE(tag, SUF, 6, 2)                                 \
    MM_CASE(tag, SUF, 7, 1) MM_CASE(tag, SUF, 7, 2)                                 \
    MM_CASE(tag, SUF, 8, 1) MM_CASE(tag, SUF, 8, 2)                                 \
    default: break;                                                                 \
    }                                                                               \
}                                                                                   \
/* C (M, N) = [C] + [init] + A (M, K) @ op(W): panel q of op(W) at P + q*qs,        \
   row k of a panel at + k*ks (see mm_tile above).  Panel groups g0 <= g < g1. */   \
static ATTR void mm_part_##SUF##_##tag(long M, long N, long K,                   \
                                          const real *A, long lda,                  \
                                          const real *P, long qs, long ks,          \
                                          real *C, long ldc, int acc,               \
                                          const real *init, long g0, long g1)       \
{                                                                                   \
    const long vl = VL, nq = (N + VL - 1) / VL;                                     \
    const int mrmax = M <= MRA ? MRA : MRB, npmax = M <= MRA ? NPA : NPB;           \
    real tmp[8 * 4 * VL] __attribute__((aligned(64)));                              \
    for (long q0 = g0 * npmax; q0 < nq && q0 < g1 * npmax; q0 += npmax) {          \
        int np = nq - q0 < npmax ? (int)(nq - q0) : npmax;                          \
        long n0 = q0 * vl, w = N - n0;  /* columns left from n0 */                  \
        int ragged = w < np * vl;                                                   \
        const real *Pq = P + q0 * qs;                                               \
        for (long i = 0; i < M; i += mrmax) {                                       \
            int mr = M - i < mrmax ? (int)(M - i) : mrmax;                          \
            const real *Ai = A + i * lda;                                           \
            real *Ci = C + i * ldc + n0;                                            \
            if (!ragged) {                                                          \
                mm_tile_any_##SUF##_##tag(mr, np, K, Ai, lda, Pq, qs, ks, Ci, ldc,   \
                                          acc, init ? init + n0 : NULL);             \
                continue;                                                           \
            }                                                                       \
            /* last, ragged panel group (packed, zero-padded): through a            \
               (mr, np*VL) buffer so that no column past N is touched */            \
            long tw = np * vl;                                                      \
            for (int r = 0; r < mr; r++) {                                          \
                real *t = tmp + r * tw;                                             \
                for (long j = 0; j < tw; j++) t[j] = 0;                             \
                if (acc) for (long j = 0; j < w; j++) t[j] = Ci[r * ldc + j];       \
                if (init) for (long j = 0; j < w; j++) t[j] += init[n0 + j];        \
            }                                                                       \
            mm_tile_any_##SUF##_##tag(mr, np, K, Ai, lda, Pq, qs, ks, tmp, tw, 1, NULL); \
            for (int r = 0; r < mr; r++)                                            \
                memcpy(Ci + r * ldc, tmp + r * tw, (size_t)w * sizeof(real));       \
        }                                                                           \
    }                                                                               \
}                                                                                   \
/* The whole product; with tb_set_num_threads(n > 1) and OpenMP, a big product      \
   (H = 256 and up) splits its panel groups over the threads. */                    \
static ATTR void mm_##SUF##_##tag(long M, long N, long K,                        \
                                     const real *A, long lda,                       \
                                     const real *P, long qs, long ks,               \
                                     real *C, long ldc, int acc, const real *init)  \
{                                                                                   \
    const long npmax = M <= MRA ? NPA : NPB;                                        \
    const long ng = ((N + VL - 1) / VL + npmax - 1) / npmax;  /* panel groups */    \
    int nt = mm_threads((double)M * N * K, ((double)M * K + (double)M * N) * sizeof(real), ng); \
    /* Few rows and whole panels (a small batch, N a multiple of VL) on one thread \
       go straight to the tiles, NPA panels at a time: mm_part's planning cost    \
       about 20 ns a call.  At T = 50, B = 1, I = H = 32 the sequence kernels     \
       took, without -> with this shortcut: RNN backward 6.2 -> 5.2 us, LSTM      \
       forward 17.1 -> 15.7 us, GRU forward 13.3 -> 11.7 us. */                     \
    if (nt <= 1 && M <= MRA && N % VL == 0) {                                       \
        for (long q = 0; q < N / VL; q += NPA) {                                    \
            int np = N / VL - q < NPA ? (int)(N / VL - q) : NPA;                    \
            mm_tile_any_##SUF##_##tag((int)M, np, K, A, lda, P + q * qs, qs, ks, C + q * VL, \
                                      ldc, acc, init ? init + q * VL : NULL);       \
        }                                                                           \
        return;                                                                     \
    }                                                                               \
    if (nt <= 1) {                                                                  \
        mm_part_##SUF##_##tag(M, N, K, A, lda, P, qs, ks, C, ldc, acc, init, 0, ng); \
        return;                                                                     \
    }                                                                               \
    MM_OMP_PARALLEL(nt, {                                                           \
        long g0 = ng * id_ / nt_, g1 = ng * (id_ + 1) / nt_;                        \
        mm_part_##SUF##_##tag(M, N, K, A, lda, P, qs, ks, C, ldc, acc, init, g0, g1); \
    });                                                                             \
}

/* ---- portable C (any compiler, any CPU): "vectors" of 4 / 2 lanes */
typedef struct { float v[4]; } mm_pf32;
typedef struct { double v[2]; } mm_pf64;
#define MM_PDEF(T, real, n)                                                         \
MM_INL T T##_load(const real *p) { T r; memcpy(r.v, p, sizeof r.v); return r; }     \
MM_INL void T##_store(real *p, T a) { memcpy(p, a.v, sizeof a.v); }                 \
MM_INL T T##_set1(real x) { T r; for (int i = 0; i < n; i++) r.v[i] = x; return r; } \
MM_INL T T##_zero(void) { return T##_set1(0); }                                     \
MM_INL T T##_fma(T a, T b, T c) { for (int i = 0; i < n; i++) c.v[i] += a.v[i] * b.v[i]; return c; } \
MM_INL T T##_add(T a, T b) { for (int i = 0; i < n; i++) a.v[i] += b.v[i]; return a; }
MM_PDEF(mm_pf32, float, 4)
MM_PDEF(mm_pf64, double, 2)
MM_TILE(float, f32, port, , mm_pf32, 4, mm_pf32_load, mm_pf32_store,
        mm_pf32_set1, mm_pf32_zero, mm_pf32_fma, mm_pf32_add, 4, 3, 6, 2)
MM_TILE(double, f64, port, , mm_pf64, 2, mm_pf64_load, mm_pf64_store,
        mm_pf64_set1, mm_pf64_zero, mm_pf64_fma, mm_pf64_add, 4, 3, 6, 2)

#ifdef MM_X86
/* ---- AVX-512F: 32 zmm registers; tiles 4 x 4 (16 accumulators) and 8 x 2 */
#define MM_T512 __attribute__((target("avx512f")))
MM_INL MM_T512 __m512 mm_fma512_ps(__m512 a, __m512 b, __m512 c) { return _mm512_fmadd_ps(a, b, c); }
MM_INL MM_T512 __m512d mm_fma512_pd(__m512d a, __m512d b, __m512d c) { return _mm512_fmadd_pd(a, b, c); }
MM_TILE(float, f32, avx512, MM_T512, __m512, 16, _mm512_loadu_ps, _mm512_storeu_ps,
        _mm512_set1_ps, _mm512_setzero_ps, mm_fma512_ps, _mm512_add_ps, 4, 4, 8, 2)
MM_TILE(double, f64, avx512, MM_T512, __m512d, 8, _mm512_loadu_pd, _mm512_storeu_pd,
        _mm512_set1_pd, _mm512_setzero_pd, mm_fma512_pd, _mm512_add_pd, 4, 4, 8, 2)

/* ---- AVX2 + FMA: 16 ymm registers; tiles 4 x 3 and 6 x 2 (12 accumulators) */
#define MM_T256 __attribute__((target("avx2,fma")))
MM_INL MM_T256 __m256 mm_fma256_ps(__m256 a, __m256 b, __m256 c) { return _mm256_fmadd_ps(a, b, c); }
MM_INL MM_T256 __m256d mm_fma256_pd(__m256d a, __m256d b, __m256d c) { return _mm256_fmadd_pd(a, b, c); }
MM_TILE(float, f32, avx2, MM_T256, __m256, 8, _mm256_loadu_ps, _mm256_storeu_ps,
        _mm256_set1_ps, _mm256_setzero_ps, mm_fma256_ps, _mm256_add_ps, 4, 3, 6, 2)
MM_TILE(double, f64, avx2, MM_T256, __m256d, 4, _mm256_loadu_pd, _mm256_storeu_pd,
        _mm256_set1_pd, _mm256_setzero_pd, mm_fma256_pd, _mm256_add_pd, 4, 3, 6, 2)
#endif

/* ------------------------------------------------------------------ */
/* Dispatch                                                           */
/* ------------------------------------------------------------------ */

typedef struct {
    const char *name;
    long vl_f32, vl_f64;   /* vector lanes */
    void (*mm_f32)(long, long, long, const float *, long, const float *, long, long, float *, long, int,
                   const float *);
    void (*mm_f64)(long, long, long, const double *, long, const double *, long, long, double *, long, int,
                   const double *);
} mm_impl_t;

/* One implementation per instruction set, in the runtime's order (runtime.h):
   the best this CPU runs is tb_isa().  On a target without the x86 tiles,
   every instruction set maps to the portable one. */
static const mm_impl_t mm_impls[TB_NUM_ISAS] = {
#ifdef MM_X86
    { "avx512", 16, 8, mm_f32_avx512, mm_f64_avx512 },
    { "avx2", 8, 4, mm_f32_avx2, mm_f64_avx2 },
#else
    { "portable", 4, 2, mm_f32_port, mm_f64_port },
    { "portable", 4, 2, mm_f32_port, mm_f64_port },
#endif
    { "portable", 4, 2, mm_f32_port, mm_f64_port },
};

static const mm_impl_t *mm_impl(void) { return &mm_impls[tb_isa()]; }

void panel_free(panel *P)
{
    if (P->owned) tb_scratch_done(TB_SLOT_PANEL);
    P->p = NULL;
    P->owned = 0;
}

/* Largest op(W) read in place (about an L2); larger ones are packed into panels. */
#define DIRECT_MAX_BYTES (1024.0 * 1024)

/* ------------------------------------------------------------------ */
/* Packing a transposed W                                             */
/* ------------------------------------------------------------------ */
/* Speed device, the transposing pack by 8 x 8 blocks (pack_t8): packing
   op(W) = W^T puts each row of W down a panel's column.  The plain loop
   (pack_into in recurrent_mm_impl.h) moves one value per load and store;
   here eight rows of eight values are loaded as vectors, transposed in
   registers and stored as eight panel rows.  It is the fixed cost of every
   sequence forward, which packs W_hh^T (and the RNN also W_ih^T).  Measured
   on one Zen 4 core, float32, B = 1, I = H = 32, the C forward alone
   (medians of four alternating runs of the two builds, plain -> blocks):
   T = 1: RNN 0.71 -> 0.30 us, GRU 1.22 -> 0.60, LSTM 3.40 -> 1.88;
   T = 50: RNN 4.23 -> 3.82 us, GRU 11.55 -> 11.04, LSTM 19.2 -> 17.9.
   At H = 64 and up no change beyond the noise.  float only (float64 packs
   with the plain loop). */
#ifdef MM_X86
#define MM_TAVX __attribute__((target("avx2")))
/* dst[c*ldd + r] = src[r*lds + c] for r, c < 8 */
static MM_TAVX void mm_t8x8_f32(const float *src, long lds, float *dst, long ldd)
{
    __m256 r[8], t[8], s[8];
    for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps(src + i * lds);
    for (int i = 0; i < 8; i += 2) {   /* pairs of rows, interleaved */
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {   /* groups of four rows, columns (0 4), (1 5), (2 6), (3 7) */
        s[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
        s[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
        s[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        s[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    for (int c = 0; c < 4; c++) {      /* low halves give columns 0-3, high halves 4-7 */
        _mm256_storeu_ps(dst + c * ldd, _mm256_permute2f128_ps(s[c], s[c + 4], 0x20));
        _mm256_storeu_ps(dst + (c + 4) * ldd, _mm256_permute2f128_ps(s[c], s[c + 4], 0x31));
    }
}
#endif

/* P[k*vl + j] = W[j*ldw + k] for k < K and the rows j < (w rounded down to
   8) it returns, when the CPU has AVX2 (vl >= 8); 0 rows otherwise. */
static long pack_t8_f32(long K, long w, long vl, const float *W, long ldw, float *P)
{
#ifdef MM_X86
    if (vl < 8) return 0;
    long j = 0, K8 = K / 8 * 8;
    for (; j + 8 <= w; j += 8) {
        for (long k = 0; k < K8; k += 8) mm_t8x8_f32(W + j * ldw + k, ldw, P + k * vl + j, vl);
        for (long k = K8; k < K; k++)
            for (long r = 0; r < 8; r++) P[k * vl + j + r] = W[(j + r) * ldw + k];
    }
    return j;
#else
    (void)K; (void)w; (void)vl; (void)W; (void)ldw; (void)P;
    return 0;
#endif
}
static long pack_t8_f64(long K, long w, long vl, const double *W, long ldw, double *P)
{
    (void)K; (void)w; (void)vl; (void)W; (void)ldw; (void)P;
    return 0;
}

#define TB_TEMPLATE "recurrent_mm_impl.h"
#include "for_each_dtype.h"
