/* gemm_portable.c -- the plain-C micro-kernel: the fallback on any CPU.
 *
 * Tile MR = 4 rows x NR = 8 columns, accumulators in a small array that the
 * compiler keeps in (SSE2 at the portable baseline) registers; the loops over
 * rows and columns have constant trip counts and are fully unrolled.
 */
#include "gemm_kernels.h"

#define MR 4
#define NR 8

#define INL static inline __attribute__((always_inline))

#define KERNEL_BODY(real)                                                               \
    real acc[MR][NR] = {{0}};                                                          \
    for (long p = 0; p < kc; p++) {                                                    \
        _Pragma("GCC unroll 4")                                                        \
        for (int i = 0; i < m; i++) {                                                  \
            real ai = a[i];                                                            \
            _Pragma("GCC unroll 8")                                                    \
            for (int j = 0; j < NR; j++) acc[i][j] += ai * b[j];                       \
        }                                                                              \
        a += MR; b += rsb;                                                             \
    }                                                                                  \
    _Pragma("GCC unroll 4")                                                            \
    for (int i = 0; i < m; i++) {                                                      \
        real *restrict ci = c + i * ldc;                                               \
        if (beta == 0) {                                                               \
            _Pragma("GCC unroll 8")                                                    \
            for (int j = 0; j < NR; j++) ci[j] = alpha * acc[i][j];                    \
        } else {                                                                       \
            _Pragma("GCC unroll 8")                                                    \
            for (int j = 0; j < NR; j++) ci[j] = alpha * acc[i][j] + beta * ci[j];     \
        }                                                                              \
    }

INL void body_f32(const int m, long kc, const float *restrict a, const float *restrict b,
                  long rsb, float *restrict c, long ldc, float alpha, float beta)
{
    KERNEL_BODY(float)
}

INL void body_f64(const int m, long kc, const double *restrict a, const double *restrict b,
                  long rsb, double *restrict c, long ldc, double alpha, double beta)
{
    KERNEL_BODY(double)
}

#define NOATTR
#define INST32(m) TB_UKR_INSTANCE(NOATTR, float, up_f32, body_f32, m)
#define INST64(m) TB_UKR_INSTANCE(NOATTR, double, up_f64, body_f64, m)
INST32(1) INST32(2) INST32(3) INST32(4)
INST64(1) INST64(2) INST64(3) INST64(4)

static const tb_gemm_kernel k_portable = {
    "portable",
    { MR, NR, 256, 256, 1024, { 0, up_f32_m1, up_f32_m2, up_f32_m3, up_f32_m4 }, { 0 }, 0, 0, 0, 0 },
    { MR, NR, 256, 128, 512, { 0, up_f64_m1, up_f64_m2, up_f64_m3, up_f64_m4 }, { 0 }, 0, 0, 0, 0 },
};

const tb_gemm_kernel *tb_gemm_kernel_portable(void) { return &k_portable; }
