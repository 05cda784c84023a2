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
 * (rc_pack_*) into column panels of one vector width VL,
 *
 *   P[q][k][0:VL] = op(W)[k, q*VL : q*VL + VL]      (zero-padded past N),
 *
 * each panel a contiguous, 64-byte aligned (K, VL) block, and every step calls
 * rc_mm_* : a register tile of mr rows x np panels (mr*np vector
 * accumulators) walks the depth K once, reading one vector of each of its np
 * panels per k and broadcasting one element of each of its mr rows of A.
 * Panels are the outer loop and row groups the inner one, so a panel group is
 * fetched from L2/L3 once per step and reused from L1 by every row group
 * (that matters when W_hh is larger than L2: H = 512).
 *
 * The tile is chosen per instruction set and compiled with target attributes
 * (AVX-512F, AVX2+FMA, baseline SSE2), the best one picked once at run time,
 * so the default build stays portable.  rc_mm_ref_* is the plain loop the
 * tests compare against (through the sequence kernels).
 *
 * Private to the recurrent kernels: declared in recurrent_common.h.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "recurrent_common.h"

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#define RC_X86 1
#include <immintrin.h>
#endif

#define RC_ALIGN 64
#define RC_INL static inline __attribute__((always_inline))

/* ------------------------------------------------------------------ */
/* Per-thread scratch                                                 */
/* ------------------------------------------------------------------ */
/* The sequence kernels need big temporaries (dgates is T*B*G*H elements).
   A fresh malloc of that size is a fresh mmap: every page faults and is
   zeroed by the kernel on first touch, which cost about a tenth of a long
   sequence's backward pass.  So each thread keeps one buffer per slot, grown
   on demand and reused by the next call; buffers above RC_SCRATCH_KEEP bytes
   are given back after use (rc_scratch_done), and all are freed when the
   thread exits. */
#define RC_SLOTS 4
#define RC_SCRATCH_KEEP ((size_t)256 << 20)

typedef struct { void *p; size_t n; } rc_slot;
static __thread rc_slot rc_slots[RC_SLOTS];
static pthread_key_t rc_key;
static pthread_once_t rc_key_once = PTHREAD_ONCE_INIT;

static void rc_free_slots(void *slots)
{
    rc_slot *s = (rc_slot *)slots;
    for (int k = 0; k < RC_SLOTS; k++) { free(s[k].p); s[k].p = NULL; s[k].n = 0; }
}

static void rc_make_key(void) { pthread_key_create(&rc_key, rc_free_slots); }

void *rc_scratch(int slot, size_t bytes)
{
    rc_slot *s = &rc_slots[slot];
    bytes = (bytes + RC_ALIGN - 1) / RC_ALIGN * RC_ALIGN;
    if (bytes == 0) bytes = RC_ALIGN;
    if (s->n >= bytes) return s->p;
    pthread_once(&rc_key_once, rc_make_key);
    pthread_setspecific(rc_key, rc_slots);  /* so thread exit frees them */
    free(s->p);
    s->p = NULL;
    s->n = 0;
    void *p = NULL;
    if (posix_memalign(&p, RC_ALIGN, bytes)) return NULL;
    s->p = p;
    s->n = bytes;
    return p;
}

void rc_scratch_done(int slot)
{
    rc_slot *s = &rc_slots[slot];
    if (s->n > RC_SCRATCH_KEEP) { free(s->p); s->p = NULL; s->n = 0; }
}

/* ------------------------------------------------------------------ */
/* Reference: the plain loop, C (M, N) (+)= A (M, K) @ op(W) (K, N)     */
/* ------------------------------------------------------------------ */

#define RC_DEFINE_REF(real, SUF)                                                    \
void tb_recurrent_mm_ref_##SUF(long M, long N, long K,                                        \
                     const real *A, long lda,    /* (M, K) */                       \
                     const real *W, long ldw,    /* op(W) (K, N): W (K, N), or (N, K) if trans */ \
                     int trans,                                                     \
                     real *C, long ldc,          /* (M, N) */                       \
                     int accumulate, const real *init) /* init (N,) or NULL */      \
{                                                                                   \
    for (long i = 0; i < M; i++)                                                    \
        for (long j = 0; j < N; j++) {                                              \
            real s = (accumulate ? C[i * ldc + j] : (real)0) + (init ? init[j] : (real)0); \
            for (long k = 0; k < K; k++)                                            \
                s += A[i * lda + k] * (trans ? W[j * ldw + k] : W[k * ldw + j]);     \
            C[i * ldc + j] = s;                                                     \
        }                                                                           \
}
RC_DEFINE_REF(float, f32)
RC_DEFINE_REF(double, f64)

/* ------------------------------------------------------------------ */
/* Packing                                                            */
/* ------------------------------------------------------------------ */

#define RC_DEFINE_PACK(real, SUF)                                                   \
/* P (ceil(N/vl) panels of (K, vl)) from op(W) (K, N): W[k*ldw + n], or            \
   W[n*ldw + k] if trans.  The caller allocated rc_panel_size_##SUF(K, N, vl). */   \
static void rc_pack_into_##SUF(long K, long N, long vl, const real *W, long ldw,    \
                               int trans, real *P)                                  \
{                                                                                   \
    long nq = (N + vl - 1) / vl;                                                    \
    for (long q = 0; q < nq; q++) {                                                 \
        real *pq = P + q * K * vl;                                                  \
        long n0 = q * vl, w = N - n0 < vl ? N - n0 : vl;                            \
        if (trans) {                                                                \
            if (w < vl) memset(pq, 0, (size_t)(K * vl) * sizeof(real));             \
            for (long j = 0; j < w; j++) {                                          \
                const real *src = W + (n0 + j) * ldw;  /* row n0+j of W: contiguous in k */ \
                for (long k = 0; k < K; k++) pq[k * vl + j] = src[k];               \
            }                                                                       \
        } else {                                                                    \
            for (long k = 0; k < K; k++) {                                          \
                const real *src = W + k * ldw + n0;                                 \
                real *dst = pq + k * vl;                                            \
                long j = 0;                                                         \
                for (; j < w; j++) dst[j] = src[j];                                 \
                for (; j < vl; j++) dst[j] = 0;                                     \
            }                                                                       \
        }                                                                           \
    }                                                                               \
}
RC_DEFINE_PACK(float, f32)
RC_DEFINE_PACK(double, f64)

/* ------------------------------------------------------------------ */
/* Threads                                                            */
/* ------------------------------------------------------------------ */
/* How many threads a product of `work` multiply-adds over `groups` panel groups
   gets: 1 unless built with OpenMP, tb_set_num_threads(n > 1), and the product
   is big enough to pay for waking them (a few microseconds). */
#define RC_PARALLEL_MIN_WORK (1 << 21)
#ifdef _OPENMP
#include <omp.h>
static int rc_threads(double work, long groups)
{
    int nt = tb_get_num_threads();
    if (nt <= 1 || work < RC_PARALLEL_MIN_WORK || groups < 2) return 1;
    return nt < groups ? nt : (int)groups;
}
#define RC_OMP_PARALLEL(nt, ...)                                                    \
    do {                                                                            \
        _Pragma("omp parallel num_threads(nt)")                                     \
        {                                                                           \
            long nt_ = omp_get_num_threads(), id_ = omp_get_thread_num();           \
            __VA_ARGS__                                                             \
        }                                                                           \
    } while (0)
#else
static int rc_threads(double work, long groups) { (void)work; (void)groups; return 1; }
#define RC_OMP_PARALLEL(nt, ...) do { long nt_ = 1, id_ = 0; __VA_ARGS__ } while (0)
#endif

/* ------------------------------------------------------------------ */
/* Tiles                                                              */
/* ------------------------------------------------------------------ */
/* RC_TILE(...) defines, for one instruction set and dtype, the always-inline
   tile body rc_tile_<SUF>_<tag>(mr, np, ...) -- mr and np are literals at
   every call site, the loops over them are unrolled, and the mr*np
   accumulators live in registers -- and the driver rc_mm_<SUF>_<tag>.
   Vocabulary: V vector type, VL lanes, LOAD (aligned), LOADU, STOREU, SET1,
   ZERO, FMA(a, b, c) = a*b + c.
   Tile shapes: M <= MRA rows use MRA x NPA (at most); more rows are cut into
   groups of MRB rows with NPB panels. */

#define RC_CASE(tag, SUF, mr, np)                                                   \
    case (mr) * 8 + (np):                                                           \
        rc_tile_##SUF##_##tag(mr, np, K, A, lda, Pq, qs, ks, C, ldc, acc, init);    \
        break;
#define RC_CASES_NP(tag, SUF, mr)                                                   \
    RC_CASE(tag, SUF, mr, 1) RC_CASE(tag, SUF, mr, 2) RC_CASE(tag, SUF, mr, 3) RC_CASE(tag, SUF, mr, 4)

/* The tile: C[0:mr, 0:np*VL] = [C] + [init] + A[0:mr, 0:K] @ op(W)[0:K, panels 0..np-1],
   op(W)[k, q*VL + j] = P[q*qs + k*ks + j].  Packed panels: qs = K*VL, ks = VL;
   W read in place (op(W) = W, N a multiple of VL): qs = VL, ks = ldw.
   A tile with few accumulators (mr*np < 8: one row, B = 1) would wait on the
   FMA latency at every k, so it keeps S = 2 or 4 partial sums over
   interleaved k and adds them at the end. */
#define RC_TILE(real, SUF, tag, ATTR, V, VL, LOADU, STOREU, SET1, ZERO, FMA, ADD,   \
                MRA, NPA, MRB, NPB)                                                 \
RC_INL ATTR void rc_tile_##SUF##_##tag(const int mr, const int np, long K,          \
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
            c[0][r][q] = acc ? LOADU(C + r * ldc + q * VL) : ZERO();                 \
            if (init) c[0][r][q] = ADD(c[0][r][q], LOADU(init + q * VL));            \
            _Pragma("GCC unroll 4")                                                 \
            for (int u = 1; u < S; u++) c[u][r][q] = ZERO();                        \
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
            STOREU(C + r * ldc + q * VL, c[0][r][q]);                               \
        }                                                                           \
    }                                                                               \
}                                                                                   \
/* One tile, by run-time (mr, np) -> the compile-time instance. */                  \
static ATTR void rc_tile_any_##SUF##_##tag(int mr, int np, long K,                  \
                                           const real *A, long lda,                 \
                                           const real *Pq, long qs, long ks,        \
                                           real *C, long ldc,                       \
                                           int acc, const real *init)               \
{                                                                                   \
    switch (mr * 8 + np) {                                                          \
    RC_CASES_NP(tag, SUF, 1) RC_CASES_NP(tag, SUF, 2)                               \
    RC_CASES_NP(tag, SUF, 3) RC_CASES_NP(tag, SUF, 4)                               \
    RC_CASE(tag, SUF, 5, 1) RC_CASE(tag, SUF, 5, 2)                                 \
    RC_CASE(tag, SUF, 6, 1) RC_CASE(tag, SUF, 6, 2)                                 \
    RC_CASE(tag, SUF, 7, 1) RC_CASE(tag, SUF, 7, 2)                                 \
    RC_CASE(tag, SUF, 8, 1) RC_CASE(tag, SUF, 8, 2)                                 \
    default: break;                                                                 \
    }                                                                               \
}                                                                                   \
/* C (M, N) = [C] + [init] + A (M, K) @ op(W): panel q of op(W) at P + q*qs,        \
   row k of a panel at + k*ks (see rc_tile above).  Panel groups g0 <= g < g1. */   \
static ATTR void rc_mm_part_##SUF##_##tag(long M, long N, long K,                   \
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
                rc_tile_any_##SUF##_##tag(mr, np, K, Ai, lda, Pq, qs, ks, Ci, ldc,   \
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
            rc_tile_any_##SUF##_##tag(mr, np, K, Ai, lda, Pq, qs, ks, tmp, tw, 1, NULL); \
            for (int r = 0; r < mr; r++)                                            \
                memcpy(Ci + r * ldc, tmp + r * tw, (size_t)w * sizeof(real));       \
        }                                                                           \
    }                                                                               \
}                                                                                   \
/* The whole product; with tb_set_num_threads(n > 1) and OpenMP, a big product      \
   (H = 256 and up) splits its panel groups over the threads. */                    \
static ATTR void rc_mm_##SUF##_##tag(long M, long N, long K,                        \
                                     const real *A, long lda,                       \
                                     const real *P, long qs, long ks,               \
                                     real *C, long ldc, int acc, const real *init)  \
{                                                                                   \
    const long npmax = M <= MRA ? NPA : NPB;                                        \
    const long ng = ((N + VL - 1) / VL + npmax - 1) / npmax;  /* panel groups */    \
    int nt = rc_threads((double)M * N * K, ng);                                     \
    if (nt <= 1) {                                                                  \
        rc_mm_part_##SUF##_##tag(M, N, K, A, lda, P, qs, ks, C, ldc, acc, init, 0, ng); \
        return;                                                                     \
    }                                                                               \
    RC_OMP_PARALLEL(nt, {                                                           \
        long g0 = ng * id_ / nt_, g1 = ng * (id_ + 1) / nt_;                        \
        rc_mm_part_##SUF##_##tag(M, N, K, A, lda, P, qs, ks, C, ldc, acc, init, g0, g1); \
    });                                                                             \
}

/* ---- portable C (any compiler, any CPU): "vectors" of 4 / 2 lanes */
typedef struct { float v[4]; } rc_pf32;
typedef struct { double v[2]; } rc_pf64;
#define RC_PDEF(T, real, n)                                                         \
RC_INL T T##_load(const real *p) { T r; memcpy(r.v, p, sizeof r.v); return r; }     \
RC_INL void T##_store(real *p, T a) { memcpy(p, a.v, sizeof a.v); }                 \
RC_INL T T##_set1(real x) { T r; for (int i = 0; i < n; i++) r.v[i] = x; return r; } \
RC_INL T T##_zero(void) { return T##_set1(0); }                                     \
RC_INL T T##_fma(T a, T b, T c) { for (int i = 0; i < n; i++) c.v[i] += a.v[i] * b.v[i]; return c; } \
RC_INL T T##_add(T a, T b) { for (int i = 0; i < n; i++) a.v[i] += b.v[i]; return a; }
RC_PDEF(rc_pf32, float, 4)
RC_PDEF(rc_pf64, double, 2)
RC_TILE(float, f32, port, , rc_pf32, 4, rc_pf32_load, rc_pf32_store,
        rc_pf32_set1, rc_pf32_zero, rc_pf32_fma, rc_pf32_add, 4, 3, 6, 2)
RC_TILE(double, f64, port, , rc_pf64, 2, rc_pf64_load, rc_pf64_store,
        rc_pf64_set1, rc_pf64_zero, rc_pf64_fma, rc_pf64_add, 4, 3, 6, 2)

#ifdef RC_X86
/* ---- AVX-512F: 32 zmm registers; tiles 4 x 4 (16 accumulators) and 8 x 2 */
#define RC_T512 __attribute__((target("avx512f")))
RC_INL RC_T512 __m512 rc_fma512_ps(__m512 a, __m512 b, __m512 c) { return _mm512_fmadd_ps(a, b, c); }
RC_INL RC_T512 __m512d rc_fma512_pd(__m512d a, __m512d b, __m512d c) { return _mm512_fmadd_pd(a, b, c); }
RC_TILE(float, f32, avx512, RC_T512, __m512, 16, _mm512_loadu_ps, _mm512_storeu_ps,
        _mm512_set1_ps, _mm512_setzero_ps, rc_fma512_ps, _mm512_add_ps, 4, 4, 8, 2)
RC_TILE(double, f64, avx512, RC_T512, __m512d, 8, _mm512_loadu_pd, _mm512_storeu_pd,
        _mm512_set1_pd, _mm512_setzero_pd, rc_fma512_pd, _mm512_add_pd, 4, 4, 8, 2)

/* ---- AVX2 + FMA: 16 ymm registers; tiles 4 x 3 and 6 x 2 (12 accumulators) */
#define RC_T256 __attribute__((target("avx2,fma")))
RC_INL RC_T256 __m256 rc_fma256_ps(__m256 a, __m256 b, __m256 c) { return _mm256_fmadd_ps(a, b, c); }
RC_INL RC_T256 __m256d rc_fma256_pd(__m256d a, __m256d b, __m256d c) { return _mm256_fmadd_pd(a, b, c); }
RC_TILE(float, f32, avx2, RC_T256, __m256, 8, _mm256_loadu_ps, _mm256_storeu_ps,
        _mm256_set1_ps, _mm256_setzero_ps, rc_fma256_ps, _mm256_add_ps, 4, 3, 6, 2)
RC_TILE(double, f64, avx2, RC_T256, __m256d, 4, _mm256_loadu_pd, _mm256_storeu_pd,
        _mm256_set1_pd, _mm256_setzero_pd, rc_fma256_pd, _mm256_add_pd, 4, 3, 6, 2)
#endif

/* ------------------------------------------------------------------ */
/* Dispatch                                                           */
/* ------------------------------------------------------------------ */

typedef struct {
    const char *name;
    long vl32, vl64;
    void (*mm32)(long, long, long, const float *, long, const float *, long, long, float *, long, int,
                 const float *);
    void (*mm64)(long, long, long, const double *, long, const double *, long, long, double *, long, int,
                 const double *);
} rc_mm_impl;

static const rc_mm_impl rc_impls[] = {
#ifdef RC_X86
    { "avx512", 16, 8, rc_mm_f32_avx512, rc_mm_f64_avx512 },
    { "avx2", 8, 4, rc_mm_f32_avx2, rc_mm_f64_avx2 },
#endif
    { "portable", 4, 2, rc_mm_f32_port, rc_mm_f64_port },
};

#define RC_NIMPL ((int)(sizeof rc_impls / sizeof rc_impls[0]))

/* Can this CPU run implementation k? */
static int rc_supported(int k)
{
#ifdef RC_X86
    __builtin_cpu_init();
    if (!strcmp(rc_impls[k].name, "avx512")) return __builtin_cpu_supports("avx512f");
    if (!strcmp(rc_impls[k].name, "avx2"))
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    return 1;
}

static const rc_mm_impl *rc_chosen;

/* The fastest implementation this CPU runs (the table is in that order). */
static const rc_mm_impl *rc_impl(void)
{
    const rc_mm_impl *c = rc_chosen;
    if (c) return c;
    for (int k = 0; k < RC_NIMPL; k++)
        if (rc_supported(k)) { c = &rc_impls[k]; break; }
    rc_chosen = c;  /* a benign race: every thread computes the same pointer */
    return c;
}

const char *tb_recurrent_mm_kernel(void) { return rc_impl()->name; }

int tb_recurrent_mm_use(const char *name)
{
    for (int k = 0; k < RC_NIMPL; k++)
        if (!strcmp(name, rc_impls[k].name) && rc_supported(k)) {
            rc_chosen = &rc_impls[k];
            return 0;
        }
    return 1;
}

/* Largest op(W) read in place (about an L2); larger ones are packed into panels. */
#define RC_DIRECT_MAX_BYTES (1024.0 * 1024)

#define RC_DEFINE_API(real, SUF, VLF, MMF)                                          \
int rc_pack_##SUF(rc_panel_##SUF *P, long K, long N, const real *W, long ldw, int trans) \
{                                                                                   \
    long vl = rc_impl()->VLF, nq = (N + vl - 1) / vl;                               \
    P->K = K; P->N = N; P->vl = vl;                                                 \
    if (!trans && N % vl == 0 && (double)K * N * sizeof(real) <= RC_DIRECT_MAX_BYTES) {      \
        /* W's rows are whole panels already: read in place (a big W is packed anyway:     \
           walking its rows a page apart per k misses the TLB at every step) */             \
        P->p = W; P->qs = vl; P->ks = ldw; P->owned = 0;                            \
        return 0;                                                                   \
    }                                                                               \
    real *p = (real *)rc_scratch(RC_SLOT_PANEL, (size_t)(nq * K * vl) * sizeof(real)); \
    if (!p) return 1;                                                               \
    rc_pack_into_##SUF(K, N, vl, W, ldw, trans, p);                                 \
    P->p = p; P->qs = K * vl; P->ks = vl; P->owned = 1;                             \
    return 0;                                                                       \
}                                                                                   \
void rc_panel_free_##SUF(rc_panel_##SUF *P)                                         \
{                                                                                   \
    if (P->owned) rc_scratch_done(RC_SLOT_PANEL);                                   \
    P->p = NULL;                                                                    \
}                                                                                   \
void rc_mm_##SUF(long M, const real *A, long lda, const rc_panel_##SUF *P,          \
                 real *C, long ldc, int accumulate, const real *init)               \
{                                                                                   \
    if (M <= 0 || P->N <= 0) return;                                                \
    if (P->K <= 0) {  /* empty product: C = [C] + [init] */                          \
        for (long i = 0; i < M; i++)                                                \
            for (long j = 0; j < P->N; j++)                                         \
                C[i * ldc + j] = (accumulate ? C[i * ldc + j] : (real)0) + (init ? init[j] : (real)0); \
        return;                                                                     \
    }                                                                               \
    rc_impl()->MMF(M, P->N, P->K, A, lda, P->p, P->qs, P->ks, C, ldc, accumulate, init); \
}
RC_DEFINE_API(float, f32, vl32, mm32)
RC_DEFINE_API(double, f64, vl64, mm64)

#define RC_DEFINE_TEST(real, SUF)                                                   \
int tb_recurrent_mm_##SUF(long M, long N, long K, const real *A, long lda,          \
                          const real *W, long ldw, int trans, real *C, long ldc,    \
                          int accumulate, const real *init, long reps)              \
{                                                                                   \
    rc_panel_##SUF P;                                                               \
    if (rc_pack_##SUF(&P, K, N, W, ldw, trans)) return 1;                           \
    for (long r = 0; r < reps; r++) rc_mm_##SUF(M, A, lda, &P, C, ldc, accumulate, init); \
    rc_panel_free_##SUF(&P);                                                        \
    return 0;                                                                       \
}
RC_DEFINE_TEST(float, f32)
RC_DEFINE_TEST(double, f64)
