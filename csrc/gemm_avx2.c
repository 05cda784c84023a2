/* gemm_avx2.c -- AVX2+FMA micro-kernels, compiled for avx2,fma through
 * function target attributes and chosen at run time by gemm.c when the CPU
 * has AVX2 and FMA but not AVX-512F (or when forced, for testing).
 *
 * Tile: MR = 6 rows x NR = two 256-bit vectors of C (16 floats / 8 doubles):
 * 12 accumulators + 2 B vectors + 1 broadcast of the 16 ymm registers.
 */
#include "gemm_kernels.h"

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__) && !defined(TB_NO_AVX2)

#include <immintrin.h>

#define TGT __attribute__((target("avx2,fma")))
#define INL static inline __attribute__((always_inline)) TGT

#define MR 6

/* m is a literal at each call site; the unroll pragmas turn the loops over
   rows into straight-line code with the accumulators in registers. */
#define KERNEL_BODY(VEC, SET1, LOAD, STORE, FMADD, MUL, ZERO, W)                        \
    VEC c0[MR], c1[MR];                                                                \
    _Pragma("GCC unroll 8")                                                            \
    for (int i = 0; i < m; i++) { c0[i] = ZERO(); c1[i] = ZERO(); }                    \
    _Pragma("GCC unroll 16")   /* C is read back only at the end: fetch it now */    \
    for (int i = 0; i < m; i++) {                                                      \
        _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);                        \
        _mm_prefetch((const char *)(c + i * ldc + 2 * W) - 1, _MM_HINT_T0);            \
    }                                                                                  \
    for (long p = 0; p < kc; p++) {   /* B may be read in place (row stride ldb): */  \
        _mm_prefetch((const char *)(b + 8 * rsb), _MM_HINT_T0);   /* fetch ahead */    \
        _mm_prefetch((const char *)(b + 8 * rsb + 2 * W) - 1, _MM_HINT_T0);            \
        VEC b0 = LOAD(b), b1 = LOAD(b + W);                                            \
        _Pragma("GCC unroll 8")                                                        \
        for (int i = 0; i < m; i++) {                                                  \
            VEC ai = SET1(a[i]);                                                       \
            c0[i] = FMADD(ai, b0, c0[i]);                                              \
            c1[i] = FMADD(ai, b1, c1[i]);                                              \
        }                                                                              \
        a += MR; b += rsb;                                                             \
    }                                                                                  \
    VEC va = SET1(alpha);                                                              \
    if (beta == 0) {                                                                   \
        _Pragma("GCC unroll 8")                                                        \
        for (int i = 0; i < m; i++) {                                                  \
            STORE(c + i * ldc, MUL(va, c0[i]));                                        \
            STORE(c + i * ldc + W, MUL(va, c1[i]));                                    \
        }                                                                              \
    } else {                                                                           \
        VEC vb = SET1(beta);                                                           \
        _Pragma("GCC unroll 8")                                                        \
        for (int i = 0; i < m; i++) {                                                  \
            STORE(c + i * ldc, FMADD(va, c0[i], MUL(vb, LOAD(c + i * ldc))));          \
            STORE(c + i * ldc + W, FMADD(va, c1[i], MUL(vb, LOAD(c + i * ldc + W))));  \
        }                                                                              \
    }

INL void body_f32(const int m, long kc, const float *restrict a, const float *restrict b,
                  long rsb, float *restrict c, long ldc, float alpha, float beta)
{
    KERNEL_BODY(__m256, _mm256_set1_ps, _mm256_loadu_ps, _mm256_storeu_ps,
                _mm256_fmadd_ps, _mm256_mul_ps, _mm256_setzero_ps, 8)
}

INL void body_f64(const int m, long kc, const double *restrict a, const double *restrict b,
                  long rsb, double *restrict c, long ldc, double alpha, double beta)
{
    KERNEL_BODY(__m256d, _mm256_set1_pd, _mm256_loadu_pd, _mm256_storeu_pd,
                _mm256_fmadd_pd, _mm256_mul_pd, _mm256_setzero_pd, 4)
}

/* Vocabulary for the few-row kernels of gemm_small.h. */
INL float hsum_f32(__m256 v)
{
    __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    x = _mm_add_ss(x, _mm_movehdup_ps(x));
    return _mm_cvtss_f32(x);
}
INL double hsum_f64(__m256d v)
{
    __m128d x = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(x, _mm_unpackhi_pd(x, x)));
}
#define V_f32 __m256
#define W_f32 8
#define ZERO_f32 _mm256_setzero_ps
#define SET1_f32 _mm256_set1_ps
#define LOAD_f32 _mm256_loadu_ps
#define STORE_f32 _mm256_storeu_ps
#define FMADD_f32 _mm256_fmadd_ps
#define MUL_f32 _mm256_mul_ps
#define ADD_f32 _mm256_add_ps
#define HSUM_f32 hsum_f32
#define V_f64 __m256d
#define W_f64 4
#define ZERO_f64 _mm256_setzero_pd
#define SET1_f64 _mm256_set1_pd
#define LOAD_f64 _mm256_loadu_pd
#define STORE_f64 _mm256_storeu_pd
#define FMADD_f64 _mm256_fmadd_pd
#define MUL_f64 _mm256_mul_pd
#define ADD_f64 _mm256_add_pd
#define HSUM_f64 hsum_f64
#include "gemm_small.h"
TB_SMALL_BODIES(f32, float)
TB_SMALL_BODIES(f64, double)

#define INST32(m) TB_UKR_INSTANCE(TGT, float, u256_f32, body_f32, m)
#define INST64(m) TB_UKR_INSTANCE(TGT, double, u256_f64, body_f64, m)
INST32(1) INST32(2) INST32(3) INST32(4) INST32(5) INST32(6)
INST64(1) INST64(2) INST64(3) INST64(4) INST64(5) INST64(6)

static const tb_gemm_kernel k_avx2 = {
    "avx2+fma",
    { MR, 16, 256, 1002, 512,
      { 0, u256_f32_m1, u256_f32_m2, u256_f32_m3, u256_f32_m4, u256_f32_m5, u256_f32_m6 },
      { 0 }, rows_f32, dots_f32, 0, 0 },
    { MR, 8, 256, 498, 256,
      { 0, u256_f64_m1, u256_f64_m2, u256_f64_m3, u256_f64_m4, u256_f64_m5, u256_f64_m6 },
      { 0 }, rows_f64, dots_f64, 0, 0 },
};

const tb_gemm_kernel *tb_gemm_kernel_avx2(void) { return &k_avx2; }

#else

const tb_gemm_kernel *tb_gemm_kernel_avx2(void) { return 0; }

#endif
