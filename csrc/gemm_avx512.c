/* gemm_avx512.c -- AVX-512F micro-kernels, compiled for avx512f through
 * function target attributes (the rest of the library stays portable) and
 * chosen at run time by gemm.c when the CPU supports AVX-512F.
 *
 * Tile: MR = 14 rows x NR = two 512-bit vectors along a row of C (32 floats /
 * 16 doubles).  Per depth step p the kernel loads the two vectors of B row p
 * and, for each of the MR rows, issues two FMAs whose A operand is an embedded
 * broadcast straight from packed A: 28 accumulators + 2 B vectors of the 32
 * zmm registers, 28 FMAs for 2 vector loads.
 *
 * Edge kernels (n < NR columns) use the same body with AVX-512 masks on the
 * last B load and on the C loads and stores, and drop the second vector when
 * n fits in one: a ragged column panel needs no padded copy of B or C.
 */
#include "gemm_kernels.h"

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__) && !defined(TB_NO_AVX512)

#include <immintrin.h>

#define TGT __attribute__((target("avx512f")))
#define INL static inline __attribute__((always_inline)) TGT

#define MR 14

/* acc += broadcast(*ap) * bv as ONE instruction with an embedded-broadcast
   memory operand.  A tiny asm statement, because GCC otherwise broadcasts into
   a register first and, with 28 live accumulators, spills. */
#define FMA_BC_f32(acc, bv, ap) \
    __asm__("vfmadd231ps %[x]%{1to16%}, %[b], %[c]" : [c] "+v"(acc) : [b] "v"(bv), [x] "m"(*(ap)))
#define FMA_BC_f64(acc, bv, ap) \
    __asm__("vfmadd231pd %[x]%{1to8%}, %[b], %[c]" : [c] "+v"(acc) : [b] "v"(bv), [x] "m"(*(ap)))

/* Per-dtype vocabulary for the body below. */
#define V_f32 __m512
#define K_f32 __mmask16
#define W_f32 16
#define ZERO_f32 _mm512_setzero_ps
#define SET1_f32 _mm512_set1_ps
#define LOAD_f32 _mm512_loadu_ps
#define MLOAD_f32 _mm512_maskz_loadu_ps
#define STORE_f32 _mm512_storeu_ps
#define MSTORE_f32 _mm512_mask_storeu_ps
#define FMADD_f32 _mm512_fmadd_ps
#define MUL_f32 _mm512_mul_ps

#define V_f64 __m512d
#define K_f64 __mmask8
#define W_f64 8
#define ZERO_f64 _mm512_setzero_pd
#define SET1_f64 _mm512_set1_pd
#define LOAD_f64 _mm512_loadu_pd
#define MLOAD_f64 _mm512_maskz_loadu_pd
#define STORE_f64 _mm512_storeu_pd
#define MSTORE_f64 _mm512_mask_storeu_pd
#define FMADD_f64 _mm512_fmadd_pd
#define MUL_f64 _mm512_mul_pd

/* body_<T>(m, nv, masked, ...): m rows, nv (1 or 2) vectors per row, and if
   `masked` the last vector is limited to the columns in mask km.  m, nv and
   masked are literals at every call site; the loops over rows carry unroll
   pragmas, so each instance is straight-line code with the accumulators in
   registers and no loop over MR or NR. */
#define DEFINE_BODY(T, real)                                                           \
INL void body_##T(const int m, const int nv, const int masked, long kc,                \
                  const real *restrict a, const real *restrict b, long rsb,            \
                  real *restrict c, long ldc, real alpha, real beta, K_##T km)         \
{                                                                                      \
    const int W = W_##T;                                                               \
    const int mask0 = masked && nv == 1, mask1 = masked && nv == 2;                    \
    V_##T c0[MR], c1[MR];                                                              \
    _Pragma("GCC unroll 16")                                                           \
    for (int i = 0; i < m; i++) { c0[i] = ZERO_##T(); c1[i] = ZERO_##T(); }            \
    _Pragma("GCC unroll 16")   /* C is only read at the end: start fetching it */      \
    for (int i = 0; i < m; i++) {                                                      \
        _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);                        \
        if (nv == 2) _mm_prefetch((const char *)(c + i * ldc + 2 * W) - 1, _MM_HINT_T0); \
    }                                                                                  \
    for (long p = 0; p < kc; p++) {                                                    \
        V_##T b0 = mask0 ? MLOAD_##T(km, b) : LOAD_##T(b), b1 = b0;                    \
        if (nv == 2) b1 = mask1 ? MLOAD_##T(km, b + W) : LOAD_##T(b + W);              \
        _Pragma("GCC unroll 16")                                                       \
        for (int i = 0; i < m; i++) {                                                  \
            FMA_BC_##T(c0[i], b0, a + i);                                              \
            if (nv == 2) FMA_BC_##T(c1[i], b1, a + i);                                 \
        }                                                                              \
        a += MR; b += rsb;                                                             \
    }                                                                                  \
    V_##T va = SET1_##T(alpha), vb = SET1_##T(beta);                                   \
    _Pragma("GCC unroll 16")                                                           \
    for (int i = 0; i < m; i++) {                                                      \
        real *ci = c + i * ldc;                                                        \
        V_##T r0 = MUL_##T(va, c0[i]), r1 = MUL_##T(va, c1[i]);                        \
        if (beta != 0) {   /* beta == 0: C's old contents (NaN?) never read */         \
            r0 = FMADD_##T(vb, mask0 ? MLOAD_##T(km, ci) : LOAD_##T(ci), r0);          \
            if (nv == 2)                                                               \
                r1 = FMADD_##T(vb, mask1 ? MLOAD_##T(km, ci + W) : LOAD_##T(ci + W), r1); \
        }                                                                              \
        if (mask0) MSTORE_##T(ci, km, r0); else STORE_##T(ci, r0);                     \
        if (nv == 2) { if (mask1) MSTORE_##T(ci + W, km, r1); else STORE_##T(ci + W, r1); } \
    }                                                                                  \
}                                                                                      \
                                                                                       \
/* Full tile: m rows x 2 vectors. */                                                   \
INL void full_##T(const int m, long kc, const real *a, const real *b, long rsb,        \
                  real *c, long ldc, real alpha, real beta)                            \
{                                                                                      \
    body_##T(m, 2, 0, kc, a, b, rsb, c, ldc, alpha, beta, 0);                          \
}                                                                                      \
                                                                                       \
/* Ragged tile: m rows x n < 2W columns. */                                            \
INL void edge_##T(const int m, long kc, const real *a, const real *b, long rsb,        \
                  real *c, long ldc, real alpha, real beta, long n)                    \
{                                                                                      \
    if (n <= W_##T)                                                                    \
        body_##T(m, 1, n < W_##T, kc, a, b, rsb, c, ldc, alpha, beta,                  \
                 (K_##T)((1u << n) - 1));                                              \
    else                                                                               \
        body_##T(m, 2, 1, kc, a, b, rsb, c, ldc, alpha, beta,                          \
                 (K_##T)((1u << (n - W_##T)) - 1));                                    \
}

DEFINE_BODY(f32, float)
DEFINE_BODY(f64, double)

#define INSTANCES(T, real)                                                     \
    TB_UKR_INSTANCE(TGT, real, full_##T, full_##T, 1)                          \
    TB_UKR_INSTANCE(TGT, real, full_##T, full_##T, 2)                          \
    TB_UKR_INSTANCE(TGT, real, full_##T, full_##T, 3)                          \
    TB_UKR_INSTANCE(TGT, real, full_##T, full_##T, 4)                          \
    TB_UKR_INSTANCE(TGT, real, full_##T, full_##T, 5)                          \
    TB_UKR_INSTANCE(TGT, real, full_##T, full_##T, 6)                          \
    TB_UKR_INSTANCE(TGT, real, full_##T, full_##T, 7)                          \
    TB_UKR_INSTANCE(TGT, real, full_##T, full_##T, 8)                          \
    TB_UKR_INSTANCE(TGT, real, full_##T, full_##T, 9)                          \
    TB_UKR_INSTANCE(TGT, real, full_##T, full_##T, 10)                         \
    TB_UKR_INSTANCE(TGT, real, full_##T, full_##T, 11)                         \
    TB_UKR_INSTANCE(TGT, real, full_##T, full_##T, 12)                         \
    TB_UKR_INSTANCE(TGT, real, full_##T, full_##T, 13)                         \
    TB_UKR_INSTANCE(TGT, real, full_##T, full_##T, 14)                         \
    TB_UKR_EDGE_INSTANCE(TGT, real, edge_##T, edge_##T, 1)                     \
    TB_UKR_EDGE_INSTANCE(TGT, real, edge_##T, edge_##T, 2)                     \
    TB_UKR_EDGE_INSTANCE(TGT, real, edge_##T, edge_##T, 3)                     \
    TB_UKR_EDGE_INSTANCE(TGT, real, edge_##T, edge_##T, 4)                     \
    TB_UKR_EDGE_INSTANCE(TGT, real, edge_##T, edge_##T, 5)                     \
    TB_UKR_EDGE_INSTANCE(TGT, real, edge_##T, edge_##T, 6)                     \
    TB_UKR_EDGE_INSTANCE(TGT, real, edge_##T, edge_##T, 7)                     \
    TB_UKR_EDGE_INSTANCE(TGT, real, edge_##T, edge_##T, 8)                     \
    TB_UKR_EDGE_INSTANCE(TGT, real, edge_##T, edge_##T, 9)                     \
    TB_UKR_EDGE_INSTANCE(TGT, real, edge_##T, edge_##T, 10)                    \
    TB_UKR_EDGE_INSTANCE(TGT, real, edge_##T, edge_##T, 11)                    \
    TB_UKR_EDGE_INSTANCE(TGT, real, edge_##T, edge_##T, 12)                    \
    TB_UKR_EDGE_INSTANCE(TGT, real, edge_##T, edge_##T, 13)                    \
    TB_UKR_EDGE_INSTANCE(TGT, real, edge_##T, edge_##T, 14)

INSTANCES(f32, float)
INSTANCES(f64, double)

#define TABLE(T)                                                                       \
    { 0, full_##T##_m1, full_##T##_m2, full_##T##_m3, full_##T##_m4, full_##T##_m5,    \
      full_##T##_m6, full_##T##_m7, full_##T##_m8, full_##T##_m9, full_##T##_m10,      \
      full_##T##_m11, full_##T##_m12, full_##T##_m13, full_##T##_m14 },                \
    { 0, edge_##T##_m1, edge_##T##_m2, edge_##T##_m3, edge_##T##_m4, edge_##T##_m5,    \
      edge_##T##_m6, edge_##T##_m7, edge_##T##_m8, edge_##T##_m9, edge_##T##_m10,      \
      edge_##T##_m11, edge_##T##_m12, edge_##T##_m13, edge_##T##_m14 }

/* Cache blocks (Zen 4 / Skylake-X class: 32-48 KB L1d, 1-2 MB L2):
   KC x MR of packed A stays in L1 across the column panels, KC x NC of packed
   B in L2 across the row panels. */
static const tb_gemm_kernel k_avx512 = {
    "avx512f (f32 14x32, f64 14x16)",
    { MR, 32, 384, 1008, 384, TABLE(f32) },
    { MR, 16, 256, 504, 256, TABLE(f64) },
};

const tb_gemm_kernel *tb_gemm_kernel_avx512(void) { return &k_avx512; }

#else

const tb_gemm_kernel *tb_gemm_kernel_avx512(void) { return 0; }

#endif
