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
#define ADD_f32 _mm512_add_ps
#define HSUM_f32 _mm512_reduce_add_ps

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
#define ADD_f64 _mm512_add_pd
#define HSUM_f64 _mm512_reduce_add_pd

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
    /* B is read in place (row stride ldb) for small M: hardware prefetchers do        \
       not follow a stride of whole pages, so fetch PFD rows ahead by hand */           \
    const long PFD = m <= 2 ? 24 : m <= 6 ? 12 : 6;                                    \
    for (long p = 0; p < kc; p++) {                                                    \
        _mm_prefetch((const char *)(b + PFD * rsb), _MM_HINT_T0);                      \
        if (nv == 2) _mm_prefetch((const char *)(b + PFD * rsb + 2 * W) - 1, _MM_HINT_T0); \
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

#include "gemm_small.h"
TB_SMALL_BODIES(f32, float)
TB_SMALL_BODIES(f64, double)


/* ------------------------------------------------------------------ */
/* Packing with in-register transposes                                */
/* ------------------------------------------------------------------ */

/* r[0..15] <- transpose of the 16 x 16 floats r[i][j]: unpack 32-bit pairs,
   then 64-bit pairs, then two rounds of 128-bit lane shuffles. */
INL void tr16_f32(__m512 r[16])
{
    __m512 t[16], u[16];
    for (int k = 0; k < 8; k++) {
        t[2 * k] = _mm512_unpacklo_ps(r[2 * k], r[2 * k + 1]);
        t[2 * k + 1] = _mm512_unpackhi_ps(r[2 * k], r[2 * k + 1]);
    }
    for (int k = 0; k < 4; k++) {   /* u[4k+c], lane L: rows 4k..4k+3 of column 4L+c */
        __m512d a = _mm512_castps_pd(t[4 * k]), b = _mm512_castps_pd(t[4 * k + 2]);
        __m512d c = _mm512_castps_pd(t[4 * k + 1]), d = _mm512_castps_pd(t[4 * k + 3]);
        u[4 * k] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
        u[4 * k + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
        u[4 * k + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(c, d));
        u[4 * k + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(c, d));
    }
    for (int c = 0; c < 4; c++) {
        __m512 a = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x88);
        __m512 b = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xDD);
        __m512 e = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x88);
        __m512 f = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xDD);
        r[c] = _mm512_shuffle_f32x4(a, e, 0x88);
        r[8 + c] = _mm512_shuffle_f32x4(a, e, 0xDD);
        r[4 + c] = _mm512_shuffle_f32x4(b, f, 0x88);
        r[12 + c] = _mm512_shuffle_f32x4(b, f, 0xDD);
    }
}

/* r[0..7] <- transpose of the 8 x 8 doubles r[i][j]. */
INL void tr8_f64(__m512d r[8])
{
    __m512d t[8];
    for (int k = 0; k < 4; k++) {   /* t[2k+c], lane L: rows 2k, 2k+1 of column 2L+c */
        t[2 * k] = _mm512_unpacklo_pd(r[2 * k], r[2 * k + 1]);
        t[2 * k + 1] = _mm512_unpackhi_pd(r[2 * k], r[2 * k + 1]);
    }
    for (int c = 0; c < 2; c++) {
        __m512d a = _mm512_shuffle_f64x2(t[c], t[2 + c], 0x88);
        __m512d b = _mm512_shuffle_f64x2(t[c], t[2 + c], 0xDD);
        __m512d e = _mm512_shuffle_f64x2(t[4 + c], t[6 + c], 0x88);
        __m512d f = _mm512_shuffle_f64x2(t[4 + c], t[6 + c], 0xDD);
        r[c] = _mm512_shuffle_f64x2(a, e, 0x88);
        r[4 + c] = _mm512_shuffle_f64x2(a, e, 0xDD);
        r[2 + c] = _mm512_shuffle_f64x2(b, f, 0x88);
        r[6 + c] = _mm512_shuffle_f64x2(b, f, 0xDD);
    }
}

/* Load up to 16 rows (rows >= nrows are zero) of `cols` (<= 16) floats from
   src + i*ld, transpose, and store column p (p < cols) at dst + p*dstep under
   mask `keep` (the lanes of one packed row).  Same for doubles with 8. */
INL void tile_f32(const float *src, long ld, long nrows, long cols, float *dst, long dstep,
                  __mmask16 keep)
{
    __m512 r[16];
    __mmask16 lm = cols >= 16 ? 0xFFFF : (__mmask16)((1u << cols) - 1);
    for (int i = 0; i < 16; i++)
        r[i] = i < nrows ? _mm512_maskz_loadu_ps(lm, src + i * ld) : _mm512_setzero_ps();
    tr16_f32(r);
    if (cols == 16)
        for (int p = 0; p < 16; p++) _mm512_mask_storeu_ps(dst + p * dstep, keep, r[p]);
    else
        for (int p = 0; p < cols; p++) _mm512_mask_storeu_ps(dst + p * dstep, keep, r[p]);
}

INL void tile_f64(const double *src, long ld, long nrows, long cols, double *dst, long dstep,
                  __mmask8 keep)
{
    __m512d r[8];
    __mmask8 lm = cols >= 8 ? 0xFF : (__mmask8)((1u << cols) - 1);
    for (int i = 0; i < 8; i++)
        r[i] = i < nrows ? _mm512_maskz_loadu_pd(lm, src + i * ld) : _mm512_setzero_pd();
    tr8_f64(r);
    if (cols == 8)
        for (int p = 0; p < 8; p++) _mm512_mask_storeu_pd(dst + p * dstep, keep, r[p]);
    else
        for (int p = 0; p < cols; p++) _mm512_mask_storeu_pd(dst + p * dstep, keep, r[p]);
}

/* A not transposed: panel q (rows q*ms.., ms <= MR) of op(A)[i0:+mc, p0:+kc]
   gets Ap[q*MR*kc + p*MR + i] = A[i0 + q*ms + i, p0 + p].  14 rows: one 16 x 16 transpose (f32) or an
   8 x 8 plus a 6 x 8 one (f64) per block of depths. */
static TGT void pack_an_f32(const float *A, long lda, long i0, long p0, long mc, long kc,
                            long ms, long q0, long q1, float *Ap)
{
    for (long q = q0; q < q1; q++) {
        long ir = q * ms, m = mc - ir < ms ? mc - ir : ms;
        const float *src = A + (i0 + ir) * lda + p0;
        float *dst = Ap + q * MR * kc;
        for (long p = 0; p < kc; p += 16)
            tile_f32(src + p, lda, m, kc - p < 16 ? kc - p : 16, dst + p * MR, MR, 0x3FFF);
    }
}

static TGT void pack_an_f64(const double *A, long lda, long i0, long p0, long mc, long kc,
                            long ms, long q0, long q1, double *Ap)
{
    for (long q = q0; q < q1; q++) {
        long ir = q * ms, m = mc - ir < ms ? mc - ir : ms;
        const double *src = A + (i0 + ir) * lda + p0;
        double *dst = Ap + q * MR * kc;
        for (long p = 0; p < kc; p += 8) {
            long cols = kc - p < 8 ? kc - p : 8;
            tile_f64(src + p, lda, m, cols, dst + p * MR, MR, 0xFF);
            if (m > 8) tile_f64(src + 8 * lda + p, lda, m - 8, cols, dst + p * MR + 8, MR, 0x3F);
        }
    }
}

/* A transposed: the same panels from op(A)[i, p] = A[p0 + p, i0 + i].  Each
   panel row (p, q) is m <= 14 contiguous elements of row p0 + p of A: one
   masked load and one masked store (two for f64), the mask keeping the store
   inside its 14-wide slot.  Rows of A are walked in order, each across all
   panels, as in the plain pack_a. */
INL void panel_row_f32(float *dst, const float *src, long m)
{
    __mmask16 k = (__mmask16)((1u << m) - 1);
    _mm512_mask_storeu_ps(dst, k, _mm512_maskz_loadu_ps(k, src));
}

INL void panel_row_f64(double *dst, const double *src, long m)
{
    __mmask8 lo = (__mmask8)(m >= 8 ? 0xFF : (1u << m) - 1);
    __mmask8 hi = (__mmask8)(m > 8 ? (1u << (m - 8)) - 1 : 0);
    _mm512_mask_storeu_pd(dst, lo, _mm512_maskz_loadu_pd(lo, src));
    if (hi) _mm512_mask_storeu_pd(dst + 8, hi, _mm512_maskz_loadu_pd(hi, src + 8));
}

#define DEFINE_PACK_AT(T, real)                                                        \
static TGT void pack_at_##T(const real *A, long lda, long i0, long p0, long mc, long kc, \
                            long ms, long q0, long q1, real *Ap)                       \
{                                                                                      \
    for (long p = 0; p < kc; p++) {                                                    \
        const real *src = A + (p0 + p) * lda + i0;                                     \
        for (long q = q0; q < q1; q++) {                                               \
            long ir = q * ms, m = mc - ir < ms ? mc - ir : ms;                         \
            panel_row_##T(Ap + q * MR * kc + p * MR, src + ir, m);                     \
        }                                                                              \
    }                                                                                  \
}
DEFINE_PACK_AT(f32, float)
DEFINE_PACK_AT(f64, double)

/* B transposed: panel q of op(B)[p0:+kc, j0:+nc] = B[j0:+nc, p0:+kc]^T gets
   Bp[(q-qoff)*NR*kc + p*NR + j] = B[j0 + q*NR + j, p0 + p], zero past nc. */
static TGT void pack_bt_f32(const float *B, long ldb, long p0, long j0, long kc, long nc,
                            long q0, long q1, long qoff, float *Bp)
{
    for (long q = q0; q < q1; q++) {
        long jr = q * 32, n = nc - jr < 32 ? nc - jr : 32;
        const float *src = B + (j0 + jr) * ldb + p0;
        float *dst = Bp + (q - qoff) * 32 * kc;
        for (long p = 0; p < kc; p += 16) {
            long cols = kc - p < 16 ? kc - p : 16;
            tile_f32(src + p, ldb, n, cols, dst + p * 32, 32, 0xFFFF);
            tile_f32(src + 16 * ldb + p, ldb, n - 16, cols, dst + p * 32 + 16, 32, 0xFFFF);
        }
    }
}

static TGT void pack_bt_f64(const double *B, long ldb, long p0, long j0, long kc, long nc,
                            long q0, long q1, long qoff, double *Bp)
{
    for (long q = q0; q < q1; q++) {
        long jr = q * 16, n = nc - jr < 16 ? nc - jr : 16;
        const double *src = B + (j0 + jr) * ldb + p0;
        double *dst = Bp + (q - qoff) * 16 * kc;
        for (long p = 0; p < kc; p += 8) {
            long cols = kc - p < 8 ? kc - p : 8;
            tile_f64(src + p, ldb, n, cols, dst + p * 16, 16, 0xFF);
            tile_f64(src + 8 * ldb + p, ldb, n - 8, cols, dst + p * 16 + 8, 16, 0xFF);
        }
    }
}

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
    { MR, 32, 384, 1008, 384, TABLE(f32), rows_f32, dots_f32, pack_an_f32, pack_bt_f32, pack_at_f32 },
    { MR, 16, 256, 1008, 256, TABLE(f64), rows_f64, dots_f64, pack_an_f64, pack_bt_f64, pack_at_f64 },
};

const tb_gemm_kernel *tb_gemm_kernel_avx512(void) { return &k_avx512; }

#else

const tb_gemm_kernel *tb_gemm_kernel_avx512(void) { return 0; }

#endif
