/* gemm_small.h -- GEMM for very few rows of C (M <= TB_SMALL_M), no packing.
 *
 * Included by a micro-kernel file after it has defined, for dtype T (f32 or
 * f64) and its vector width: V_T, W_T, ZERO_T, SET1_T, LOAD_T, STORE_T,
 * FMADD_T, MUL_T, HSUM_T (sum of the lanes), and TGT (target attribute).
 * It defines rows_<T>/dots_<T> with the tb_small_* signature (gemm_kernels.h).
 *
 * With one to four rows, the blocked path would pack all of B to use each
 * element once or twice.  Instead:
 *
 *   rows_T  (op(B) = B)   C[i, :] = beta C[i, :] + sum_p alpha A[i, p] B[p, :],
 *           four rows of B at a time, each streamed contiguously across the
 *           whole width (prefetch-friendly; a column walk down B with a 4 KB
 *           row stride would hit the same few cache sets every step).  The m
 *           rows of C (m*N elements) stay in L1/L2 between the steps.
 *   dots_T  (op(B) = B^T) C[i, j] = alpha dot(op(A)[i, :], B[j, :]) + beta C[i, j]:
 *           rows of A and of B are both contiguous; 4 columns at a time,
 *           4*m vector accumulators, lanes summed at the end.  op(A) must
 *           have unit column stride (the driver copies a transposed A).
 *
 * m is a compile-time constant of each instance (1..4): the loops over rows
 * unroll into straight-line code.
 */
#define TB_SMALL_BODIES(T, real)                                                       \
                                                                                       \
/* C[0:m, :] += alpha op(A)[0:m, p:p+U] @ B[p:p+U, :] for U (1 or 4) rows of B. */   \
static inline __attribute__((always_inline)) TGT void                                  \
rows_step_##T(const int m, const int U, long p, long N, real alpha, const real *A,     \
              long rsa, long csa, const real *B, long ldb, real *C, long ldc)          \
{                                                                                      \
    const long W = W_##T;                                                              \
    real s[4][4];                                                                      \
    V_##T av[4][4];                                                                    \
    const real *b[4];                                                                  \
    _Pragma("GCC unroll 4")                                                            \
    for (int u = 0; u < U; u++) {                                                      \
        b[u] = B + (p + u) * ldb;                                                      \
        _Pragma("GCC unroll 4")                                                        \
        for (int i = 0; i < m; i++) {                                                  \
            s[i][u] = alpha * A[i * rsa + (p + u) * csa];                              \
            av[i][u] = SET1_##T(s[i][u]);                                              \
        }                                                                              \
    }                                                                                  \
    long j = 0;                                                                        \
    for (; j + W <= N; j += W) {                                                       \
        V_##T v[4];                                                                    \
        _Pragma("GCC unroll 4")                                                        \
        for (int u = 0; u < U; u++) v[u] = LOAD_##T(b[u] + j);                         \
        _Pragma("GCC unroll 4")                                                        \
        for (int i = 0; i < m; i++) {                                                  \
            real *c = C + i * ldc + j;                                                 \
            V_##T t = MUL_##T(av[i][0], v[0]);                                         \
            _Pragma("GCC unroll 4")                                                    \
            for (int u = 1; u < U; u++) t = FMADD_##T(av[i][u], v[u], t);              \
            STORE_##T(c, ADD_##T(LOAD_##T(c), t));                                     \
        }                                                                              \
    }                                                                                  \
    for (; j < N; j++) {                                                               \
        _Pragma("GCC unroll 4")                                                        \
        for (int i = 0; i < m; i++) {                                                  \
            real t = 0;                                                                \
            _Pragma("GCC unroll 4")                                                    \
            for (int u = 0; u < U; u++) t += s[i][u] * b[u][j];                        \
            C[i * ldc + j] += t;                                                       \
        }                                                                              \
    }                                                                                  \
}                                                                                      \
                                                                                       \
static inline __attribute__((always_inline)) TGT void                                  \
rows_body_##T(const int m, long N, long K, real alpha, const real *A, long rsa,        \
              long csa, const real *B, long ldb, real beta, real *C, long ldc)         \
{                                                                                      \
    const long W = W_##T;                                                              \
    for (int i = 0; i < m; i++) {   /* C = beta C; beta == 0 never reads C */          \
        real *c = C + i * ldc;                                                         \
        long j = 0;                                                                    \
        if (beta == 0) {                                                               \
            for (; j + W <= N; j += W) STORE_##T(c + j, ZERO_##T());                   \
            for (; j < N; j++) c[j] = 0;                                               \
        } else if (beta != 1) {                                                        \
            V_##T vb = SET1_##T(beta);                                                 \
            for (; j + W <= N; j += W) STORE_##T(c + j, MUL_##T(vb, LOAD_##T(c + j))); \
            for (; j < N; j++) c[j] *= beta;                                           \
        }                                                                              \
    }                                                                                  \
    long p = 0;                                                                        \
    for (; p + 4 <= K; p += 4) rows_step_##T(m, 4, p, N, alpha, A, rsa, csa, B, ldb, C, ldc); \
    for (; p < K; p++) rows_step_##T(m, 1, p, N, alpha, A, rsa, csa, B, ldb, C, ldc);  \
}                                                                                      \
                                                                                       \
/* nj (1 or 4) columns j0.. of C from rows j0.. of B. */                               \
static inline __attribute__((always_inline)) TGT void                                  \
dots_cols_##T(const int m, const int nj, long K, real alpha, const real *A, long rsa,  \
              const real *B, long ldb, real beta, real *C, long ldc)                   \
{                                                                                      \
    const long W = W_##T;                                                              \
    V_##T acc[4][4];                                                                   \
    _Pragma("GCC unroll 4")                                                            \
    for (int i = 0; i < m; i++) {                                                      \
        _Pragma("GCC unroll 4")                                                        \
        for (int j = 0; j < nj; j++) acc[i][j] = ZERO_##T();                           \
    }                                                                                  \
    long p = 0;                                                                        \
    for (; p + W <= K; p += W) {                                                       \
        V_##T bv[4], a;                                                                \
        _Pragma("GCC unroll 4")                                                        \
        for (int j = 0; j < nj; j++) bv[j] = LOAD_##T(B + j * ldb + p);                \
        _Pragma("GCC unroll 4")                                                        \
        for (int i = 0; i < m; i++) {                                                  \
            a = LOAD_##T(A + i * rsa + p);                                             \
            _Pragma("GCC unroll 4")                                                    \
            for (int j = 0; j < nj; j++) acc[i][j] = FMADD_##T(a, bv[j], acc[i][j]);   \
        }                                                                              \
    }                                                                                  \
    _Pragma("GCC unroll 4")                                                            \
    for (int i = 0; i < m; i++) {                                                      \
        _Pragma("GCC unroll 4")                                                        \
        for (int j = 0; j < nj; j++) {                                                 \
            real sum = HSUM_##T(acc[i][j]);                                            \
            for (long q = p; q < K; q++) sum += A[i * rsa + q] * B[j * ldb + q];       \
            real *c = C + i * ldc + j;                                                 \
            *c = beta == 0 ? alpha * sum : alpha * sum + beta * *c;                    \
        }                                                                              \
    }                                                                                  \
}                                                                                      \
                                                                                       \
static inline __attribute__((always_inline)) TGT void                                  \
dots_body_##T(const int m, long N, long K, real alpha, const real *A, long rsa,        \
              long csa, const real *B, long ldb, real beta, real *C, long ldc)         \
{                                                                                      \
    (void)csa;   /* 1 */                                                               \
    long j = 0;                                                                        \
    for (; j + 4 <= N; j += 4)                                                         \
        dots_cols_##T(m, 4, K, alpha, A, rsa, B + j * ldb, ldb, beta, C + j, ldc);     \
    for (; j < N; j++)                                                                 \
        dots_cols_##T(m, 1, K, alpha, A, rsa, B + j * ldb, ldb, beta, C + j, ldc);     \
}                                                                                      \
                                                                                       \
TB_SMALL_INSTANCE(rows, T, real, 1) TB_SMALL_INSTANCE(rows, T, real, 2)                \
TB_SMALL_INSTANCE(rows, T, real, 3) TB_SMALL_INSTANCE(rows, T, real, 4)                \
TB_SMALL_INSTANCE(dots, T, real, 1) TB_SMALL_INSTANCE(dots, T, real, 2)                \
TB_SMALL_INSTANCE(dots, T, real, 3) TB_SMALL_INSTANCE(dots, T, real, 4)                \
                                                                                       \
static void rows_##T(long M, long N, long K, real alpha, const real *A, long rsa,      \
                     long csa, const real *B, long ldb, real beta, real *C, long ldc)  \
{                                                                                      \
    static void (*const f[5])(long, long, real, const real *, long, long,              \
                              const real *, long, real, real *, long) =                \
        { 0, rows_##T##_m1, rows_##T##_m2, rows_##T##_m3, rows_##T##_m4 };             \
    f[M](N, K, alpha, A, rsa, csa, B, ldb, beta, C, ldc);                              \
}                                                                                      \
                                                                                       \
static void dots_##T(long M, long N, long K, real alpha, const real *A, long rsa,      \
                     long csa, const real *B, long ldb, real beta, real *C, long ldc)  \
{                                                                                      \
    static void (*const f[5])(long, long, real, const real *, long, long,              \
                              const real *, long, real, real *, long) =                \
        { 0, dots_##T##_m1, dots_##T##_m2, dots_##T##_m3, dots_##T##_m4 };             \
    f[M](N, K, alpha, A, rsa, csa, B, ldb, beta, C, ldc);                              \
}

#define TB_SMALL_INSTANCE(kind, T, real, m)                                            \
static TGT void kind##_##T##_m##m(long N, long K, real alpha, const real *A, long rsa, \
                                  long csa, const real *B, long ldb, real beta,        \
                                  real *C, long ldc)                                   \
{ kind##_body_##T(m, N, K, alpha, A, rsa, csa, B, ldb, beta, C, ldc); }
