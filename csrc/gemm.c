/* gemm.c -- C = alpha * op(A) @ op(B) + beta * C, row-major.
 *
 * Two implementations with one signature:
 *   tb_gemm_ref_*  the plain triple loop: obviously correct, used by tests;
 *   tb_gemm_*      the one the library calls (to be replaced by a packed,
 *                  cache-blocked kernel with run-time CPU dispatch).
 */
#include <stdlib.h>
#include <string.h>
#include "tinybptt.h"

const char *tb_gemm_kernel_name(void) { return "portable-rowloop"; }

#define DEFINE_GEMM(real, SUF)                                                     \
void tb_gemm_ref_##SUF(int trans_a, int trans_b, long M, long N, long K,           \
                       real alpha, const real *A, long lda,                        \
                       const real *B, long ldb,                                    \
                       real beta, real *C, long ldc)                               \
{                                                                                  \
    for (long i = 0; i < M; i++) {                                                 \
        for (long j = 0; j < N; j++) {                                             \
            real acc = 0;                                                          \
            for (long k = 0; k < K; k++) {                                         \
                real a = trans_a ? A[k * lda + i] : A[i * lda + k];                \
                real b = trans_b ? B[j * ldb + k] : B[k * ldb + j];                \
                acc += a * b;                                                      \
            }                                                                      \
            C[i * ldc + j] = alpha * acc + (beta == 0 ? 0 : beta * C[i * ldc + j]); \
        }                                                                          \
    }                                                                              \
}                                                                                  \
                                                                                   \
void tb_gemm_##SUF(int trans_a, int trans_b, long M, long N, long K,               \
                   real alpha, const real *A, long lda,                            \
                   const real *B, long ldb,                                        \
                   real beta, real *C, long ldc)                                   \
{                                                                                  \
    /* scale C by beta first */                                                    \
    for (long i = 0; i < M; i++) {                                                 \
        real *c = C + i * ldc;                                                     \
        if (beta == 0) memset(c, 0, (size_t)N * sizeof(real));                     \
        else if (beta != 1) for (long j = 0; j < N; j++) c[j] *= beta;             \
    }                                                                              \
    if (M == 0 || N == 0 || K == 0) return;                                        \
    /* make op(B) a contiguous (K, N) panel if it is transposed */                 \
    real *Bt = NULL;                                                               \
    const real *Bk = B;                                                            \
    long ldbk = ldb;                                                               \
    if (trans_b) {                                                                 \
        Bt = (real *)malloc((size_t)K * (size_t)N * sizeof(real));                 \
        if (!Bt) { tb_gemm_ref_##SUF(trans_a, trans_b, M, N, K, alpha, A, lda,     \
                                     B, ldb, 1, C, ldc); return; }                 \
        for (long j = 0; j < N; j++)                                               \
            for (long k = 0; k < K; k++) Bt[k * N + j] = B[j * ldb + k];           \
        Bk = Bt; ldbk = N;                                                         \
    }                                                                              \
    for (long i = 0; i < M; i++) {                                                 \
        real *restrict c = C + i * ldc;                                            \
        for (long k = 0; k < K; k++) {                                             \
            real a = alpha * (trans_a ? A[k * lda + i] : A[i * lda + k]);          \
            const real *restrict b = Bk + k * ldbk;                                \
            for (long j = 0; j < N; j++) c[j] += a * b[j];                         \
        }                                                                          \
    }                                                                              \
    free(Bt);                                                                      \
}

DEFINE_GEMM(float, f32)
DEFINE_GEMM(double, f64)
