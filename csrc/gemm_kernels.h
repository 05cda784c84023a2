/* gemm_kernels.h -- private interface between the GEMM driver (gemm.c) and
 * the micro-kernels (gemm_portable.c, gemm_avx2.c, gemm_avx512.c).
 *
 * Not part of the public API (csrc/tinybptt.h); cffi never sees this file.
 *
 * A micro-kernel computes one register-blocked tile of C:
 *
 *     C[0:m, 0:NR] = alpha * Ap @ Bp + beta * C[0:m, 0:NR]      (beta == 0: C not read)
 *
 *   Ap  packed op(A) micro-panel, Ap[p*MR + i] = op(A)[i, p]   (p < kc, i < m)
 *   Bp  op(B) micro-panel,        Bp[p*rsb + j] = op(B)[p, j]   (p < kc, j < NR)
 *       rsb == NR when B was packed, ldb when the kernel reads B in place.
 *   C   row-major with leading dimension ldc; all NR columns are written.
 *
 * m (1..MR) is a compile-time constant of each kernel instance: the driver
 * picks ukr[m] from the table, so an M edge costs nothing extra and no loop
 * over MR or NR is left in the generated code.  N edges (n < NR) are handled
 * by the driver: zero-padded B panel, tile written to a temporary, copied.
 */
#ifndef TB_GEMM_KERNELS_H
#define TB_GEMM_KERNELS_H

#define TB_MAX_MR 16
#define TB_MAX_NR 64

typedef void (*tb_ukr_f32)(long kc, const float *a, const float *b, long rsb,
                           float *c, long ldc, float alpha, float beta);
typedef void (*tb_ukr_f64)(long kc, const double *a, const double *b, long rsb,
                           double *c, long ldc, double alpha, double beta);
/* Optional edge kernels for a ragged last column panel, 1 <= n < NR: only
   columns j < n of B are read and of C written (masked loads and stores), so
   neither B nor C needs a padded copy. */
typedef void (*tb_ukr_edge_f32)(long kc, const float *a, const float *b, long rsb,
                                float *c, long ldc, float alpha, float beta, long n);
typedef void (*tb_ukr_edge_f64)(long kc, const double *a, const double *b, long rsb,
                                double *c, long ldc, double alpha, double beta, long n);

/* Optional unpacked paths for M <= TB_SMALL_M rows (gemm_small.h):
     rows: op(B) = B,   dots: op(B) = B^T (then csa must be 1).
   op(A)[i, p] = A[i*rsa + p*csa]; C = alpha op(A) op(B) + beta C. */
#define TB_SMALL_M 4
typedef void (*tb_small_f32)(long M, long N, long K, float alpha, const float *A, long rsa,
                             long csa, const float *B, long ldb, float beta, float *C, long ldc);
typedef void (*tb_small_f64)(long M, long N, long K, double alpha, const double *A, long rsa,
                             long csa, const double *B, long ldb, double beta, double *C, long ldc);

/* Optional vectorised packing (else gemm.c's plain loops), same layouts as
   pack_a / pack_b in gemm.c: an = op(A) = A (not transposed), at = op(A) = A^T,
   bt = op(B) = B^T. */
typedef void (*tb_pack_an_f32)(const float *A, long lda, long i0, long p0, long mc, long kc,
                               long ms, long q0, long q1, float *Ap);
typedef void (*tb_pack_an_f64)(const double *A, long lda, long i0, long p0, long mc, long kc,
                               long ms, long q0, long q1, double *Ap);
typedef void (*tb_pack_bt_f32)(const float *B, long ldb, long p0, long j0, long kc, long nc,
                               long q0, long q1, long qoff, float *Bp);
typedef void (*tb_pack_bt_f64)(const double *B, long ldb, long p0, long j0, long kc, long nc,
                               long q0, long q1, long qoff, double *Bp);

/* Register tile MR x NR and cache blocks KC (depth), MC (rows of packed A),
   NC (columns of packed B) for one dtype.  ukr[m] / edge[m] are the kernels
   for m rows; edge[] may be all NULL, and so may the rest. */
typedef struct {
    int mr, nr, kc, mc, nc;
    tb_ukr_f32 ukr[TB_MAX_MR + 1];
    tb_ukr_edge_f32 edge[TB_MAX_MR + 1];
    tb_small_f32 rows, dots;
    tb_pack_an_f32 pack_an;
    tb_pack_bt_f32 pack_bt;
    tb_pack_an_f32 pack_at;   /* same arguments as pack_an */
} tb_kernel_f32;
typedef struct {
    int mr, nr, kc, mc, nc;
    tb_ukr_f64 ukr[TB_MAX_MR + 1];
    tb_ukr_edge_f64 edge[TB_MAX_MR + 1];
    tb_small_f64 rows, dots;
    tb_pack_an_f64 pack_an;
    tb_pack_bt_f64 pack_bt;
    tb_pack_an_f64 pack_at;
} tb_kernel_f64;

typedef struct {
    const char *name;
    tb_kernel_f32 f32;
    tb_kernel_f64 f64;
} tb_gemm_kernel;

/* Each returns NULL when the kernel was not compiled for this target. */
const tb_gemm_kernel *tb_gemm_kernel_portable(void);
const tb_gemm_kernel *tb_gemm_kernel_avx2(void);
const tb_gemm_kernel *tb_gemm_kernel_avx512(void);

/* Helpers for building the ukr[] tables from one always-inline kernel body
   `body(m, kc, a, b, rsb, c, ldc, alpha, beta)` with a compile-time m. */
#define TB_UKR_INSTANCE(attr, real, name, body, m)                               \
    static attr void name##_m##m(long kc, const real *a, const real *b, long rsb, \
                                 real *c, long ldc, real alpha, real beta)        \
    { body(m, kc, a, b, rsb, c, ldc, alpha, beta); }

#define TB_UKR_EDGE_INSTANCE(attr, real, name, body, m)                          \
    static attr void name##_m##m(long kc, const real *a, const real *b, long rsb, \
                                 real *c, long ldc, real alpha, real beta, long n) \
    { body(m, kc, a, b, rsb, c, ldc, alpha, beta, n); }

#endif
