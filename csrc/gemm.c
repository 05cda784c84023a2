/* gemm.c -- C = alpha * op(A) @ op(B) + beta * C, row-major.
 *
 * Two implementations with one signature:
 *   tb_gemm_ref_*  the plain triple loop: obviously correct, used by tests;
 *   tb_gemm_*      the fast GEMM the library calls, described below.
 *
 * The blocked GEMM follows the BLIS / GotoBLAS structure.  With MR x NR the
 * register tile of the micro-kernel and KC, MC, NC the cache blocks:
 *
 *   for ic in M step MC                      rows of C
 *     for pc in K step KC                    depth
 *       pack op(A)[ic:+MC, pc:+KC] -> Ap     MR-row micro-panels, (p, i) order
 *       for jc in N step NC                  columns of C
 *         pack op(B)[pc:+KC, jc:+NC] -> Bp   NR-column micro-panels, (p, j) order,
 *                                            zero-padded to a multiple of NR
 *         for ir in MC step MR               one A micro-panel, kept in L1
 *           for jr in NC step NR             B micro-panels streamed from L2
 *             micro-kernel: C[ir:+MR, jr:+NR] = alpha*Ap@Bp + beta'*C
 *
 * beta' is beta for the first depth block and 1 afterwards (beta == 0 never
 * reads C).  Packing does the transposes, so one micro-kernel serves all four
 * trans combinations.  The micro-kernels (gemm_kernels.h) are chosen once by
 * run-time CPU dispatch: AVX-512F (gemm_avx512.c), else AVX2+FMA
 * (gemm_avx2.c), else portable C (gemm_portable.c).  Blocks are split evenly
 * (M = 1024 with MC = 1008 runs as 2 x 512, not 1008 + 16).
 *
 * Small M matters most here (an RNN step is (B, H) @ (H, G*H) with B = 1..64):
 *   - M <= 5 (op(B) = B) or M <= 16 (op(B) = B^T, K >= 128): no packing at all;
 *     gemm_small.h streams rows of B, or takes dot products with rows of B^T.
 *   - op(B) = B and M <= 8 MR-panels (or all of B in half an L2): B is read
 *     in place by the micro-kernel (row stride ldb), never packed; packing
 *     costs about as much as the product when few row panels reuse it.
 *   - the micro-kernel is instantiated for every row count m = 1..MR and the
 *     row panels are balanced (M = 16 runs as 8 + 8, not 14 + 2), so an M
 *     edge computes no padded rows; AVX-512 masks handle N edges in place.
 *
 * Scratch memory comes from a per-thread buffer (grown on demand, bounded by
 * the block sizes, freed at thread exit), so calls do not malloc after
 * warm-up and the library stays thread-safe.  With tb_set_num_threads(n > 1)
 * and OpenMP, large products split packing and the tile loop over n threads;
 * one thread is the default.
 */
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include "tinybptt.h"
#include "gemm_kernels.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* ------------------------------------------------------------------ */
/* Reference                                                          */
/* ------------------------------------------------------------------ */

#define DEFINE_GEMM_REF(real, SUF)                                                 \
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
}

DEFINE_GEMM_REF(float, f32)
DEFINE_GEMM_REF(double, f64)

/* When op(B) = B, the micro-kernel reads B in place (no packing) if M is at
   most this many MR-panels (little reuse to pay for packing) or if all of B
   fits in about half an L2 (it then stays cached however it is walked). */
#define DIRECT_B_PANELS 8
#define DIRECT_B_BYTES (512.0 * 1024)
/* Up to this many rows use the unpacked kernels of gemm_small.h (rows of B
   streamed when op(B) = B; dot products when op(B) = B^T, from 5 rows on only
   if K >= 128).  Measured on Zen 4 against the blocked path. */
#define SMALL_ROWS_MAX 5
#define SMALL_DOTS_MAX 16

/* ------------------------------------------------------------------ */
/* Run-time CPU dispatch                                              */
/* ------------------------------------------------------------------ */

static int cpu_has(const char *feature)
{
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
    __builtin_cpu_init();
    if (!strcmp(feature, "avx512")) return __builtin_cpu_supports("avx512f");
    if (!strcmp(feature, "avx2")) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    (void)feature;
    return 0;
}

/* The kernel called `name` if it was compiled in and this CPU can run it. */
static const tb_gemm_kernel *kernel_by_name(const char *name)
{
    if (!strcmp(name, "portable")) return tb_gemm_kernel_portable();
    if (!strcmp(name, "avx2")) return cpu_has("avx2") ? tb_gemm_kernel_avx2() : NULL;
    if (!strcmp(name, "avx512")) return cpu_has("avx512") ? tb_gemm_kernel_avx512() : NULL;
    return NULL;
}

#ifdef TB_GEMM_TUNING
/* Developer build only (-DTB_GEMM_TUNING): override the cache blocks with
   TB_GEMM_BLOCKS="kc32,mc32,nc32,kc64,mc64,nc64" and the in-place-B row
   limit (in MR panels) with TB_GEMM_DIRECT, read when a kernel is selected. */
#include <stdio.h>
static tb_gemm_kernel tuned;
static int direct_b_panels = DIRECT_B_PANELS;
static long small_rows_max = SMALL_ROWS_MAX, small_dots_max = SMALL_DOTS_MAX;
static const tb_gemm_kernel *tune(const tb_gemm_kernel *k)
{
    const char *e = getenv("TB_GEMM_BLOCKS");
    if (getenv("TB_GEMM_DIRECT")) direct_b_panels = atoi(getenv("TB_GEMM_DIRECT"));
    if (getenv("TB_GEMM_ROWS")) small_rows_max = atol(getenv("TB_GEMM_ROWS"));
    if (getenv("TB_GEMM_DOTS")) small_dots_max = atol(getenv("TB_GEMM_DOTS"));
    if (!e) return k;
    tuned = *k;
    sscanf(e, "%d,%d,%d,%d,%d,%d", &tuned.f32.kc, &tuned.f32.mc, &tuned.f32.nc,
           &tuned.f64.kc, &tuned.f64.mc, &tuned.f64.nc);
    return &tuned;
}
#else
#define direct_b_panels DIRECT_B_PANELS
#define small_rows_max SMALL_ROWS_MAX
#define small_dots_max SMALL_DOTS_MAX
#define tune(k) (k)
#endif

/* Best kernel for this CPU; TINYBPTT_GEMM_KERNEL=portable|avx2|avx512 overrides
   (ignored when that kernel cannot run here). */
static const tb_gemm_kernel *kernel_auto(void)
{
    const char *env = getenv("TINYBPTT_GEMM_KERNEL");
    const tb_gemm_kernel *k = NULL;
    if (env && *env) k = kernel_by_name(env);
    if (!k) k = kernel_by_name("avx512");
    if (!k) k = kernel_by_name("avx2");
    if (!k) k = tb_gemm_kernel_portable();
    return tune(k);
}

static const tb_gemm_kernel *g_kernel;   /* set once; accessed atomically */

static const tb_gemm_kernel *kernel(void)
{
    const tb_gemm_kernel *k = __atomic_load_n(&g_kernel, __ATOMIC_ACQUIRE);
    if (!k) {
        k = kernel_auto();   /* idempotent: racing threads store the same pointer */
        __atomic_store_n(&g_kernel, k, __ATOMIC_RELEASE);
    }
    return k;
}

const char *tb_gemm_kernel_name(void) { return kernel()->name; }

/* Not in tinybptt.h on purpose: a test hook (reached with ffi.dlopen) that
   switches the micro-kernel for the whole process.  name: "portable", "avx2",
   "avx512" or "auto".  Returns 0, or -1 if that kernel cannot run here.
   Do not call it while other threads are inside tb_gemm_*. */
int tb_gemm_select_kernel(const char *name)
{
    const tb_gemm_kernel *k = (!name || !*name || !strcmp(name, "auto")) ? kernel_auto()
                                                                          : kernel_by_name(name);
    if (!k) return -1;
    k = tune(k);
    __atomic_store_n(&g_kernel, k, __ATOMIC_RELEASE);
    return 0;
}

/* ------------------------------------------------------------------ */
/* Per-thread scratch buffer                                          */
/* ------------------------------------------------------------------ */

static _Thread_local void *ws_ptr;
static _Thread_local size_t ws_size;
static pthread_key_t ws_key;
static pthread_once_t ws_once = PTHREAD_ONCE_INIT;

static void ws_free(void *p) { free(p); }
static void ws_make_key(void) { pthread_key_create(&ws_key, ws_free); }

/* At least `bytes` of 64-byte-aligned scratch owned by the calling thread, or
   NULL if out of memory.  Block sizes bound it (a few MB at most). */
static void *workspace(size_t bytes)
{
    if (bytes <= ws_size) return ws_ptr;
    pthread_once(&ws_once, ws_make_key);
    size_t want = (bytes + 4095) & ~(size_t)4095;
    void *p = aligned_alloc(64, want);
    if (!p) return NULL;
    free(ws_ptr);
    ws_ptr = p;
    ws_size = want;
    pthread_setspecific(ws_key, p);   /* freed by ws_free when the thread exits */
    return p;
}

/* ------------------------------------------------------------------ */
/* Blocked GEMM                                                       */
/* ------------------------------------------------------------------ */

/* Products smaller than this (M*N*K) stay on one thread. */
#define PARALLEL_MIN_WORK (1L << 21)

static long min_l(long a, long b) { return a < b ? a : b; }


static long round_up(long a, long b) { return (a + b - 1) / b * b; }
/* Block size <= blk that splits n into equal pieces: ceil(n / ceil(n / blk)). */
static long balanced(long n, long blk)
{
    long pieces = (n + blk - 1) / blk;
    return (n + pieces - 1) / pieces;
}

#define DEFINE_GEMM(real, SUF)                                                         \
                                                                                       \
/* C = beta * C over an M x N block, never reading C when beta == 0. */                \
static void scale_c_##SUF(long M, long N, real beta, real *C, long ldc)                \
{                                                                                      \
    for (long i = 0; i < M; i++) {                                                     \
        real *c = C + i * ldc;                                                         \
        if (beta == 0) memset(c, 0, (size_t)N * sizeof(real));                         \
        else if (beta != 1) for (long j = 0; j < N; j++) c[j] *= beta;                 \
    }                                                                                  \
}                                                                                      \
                                                                                       \
/* Pack micro-panels [q0, q1) of op(A)[i0:+mc, p0:+kc]: panel q holds the ms (<= MR)   \
   rows q*ms.. as Ap[q*MR*kc + p*MR + i].  Rows past ms (or mc) are left unwritten:   \
   the m-row kernel instance never reads them. */                                      \
static void pack_a_##SUF(int ta, const real *A, long lda, long i0, long p0,            \
                         long mc, long kc, int MR, long ms, long q0, long q1,          \
                         real *Ap)                                                     \
{                                                                                      \
    if (ta) {   /* op(A)[i, p] = A[p, i]: walk the rows of A, each one contiguous     \
                   across all panels (a row stride of 4 KB walked down one panel     \
                   would keep hitting the same cache sets) */                        \
        for (long p = 0; p < kc; p++) {                                                \
            const real *restrict src = A + (p0 + p) * lda + i0;                        \
            for (long q = q0; q < q1; q++) {                                           \
                long ir = q * ms, m = min_l(ms, mc - ir);                              \
                real *restrict dst = Ap + q * MR * kc + p * MR;                        \
                for (long i = 0; i < m; i++) dst[i] = src[ir + i];                     \
            }                                                                          \
        }                                                                              \
        return;                                                                        \
    }                                                                                  \
    for (long q = q0; q < q1; q++) {                                                   \
        long ir = q * ms, m = min_l(ms, mc - ir);                                      \
        real *restrict dst = Ap + q * MR * kc;                                         \
        for (long i = 0; i < m; i++) {                                                 \
            const real *restrict src = A + (i0 + ir + i) * lda + p0;                   \
            for (long p = 0; p < kc; p++) dst[p * MR + i] = src[p];                    \
        }                                                                              \
    }                                                                                  \
}                                                                                      \
                                                                                       \
/* Pack micro-panels [q0, q1) of op(B)[p0:+kc, j0:+nc]: panel q holds columns          \
   q*NR.. as Bp[(q-qoff)*NR*kc + p*NR + j], zero-padded past nc. */                    \
static void pack_b_##SUF(int tb, const real *B, long ldb, long p0, long j0,            \
                         long kc, long nc, int NR, long q0, long q1, long qoff,        \
                         real *Bp)                                                     \
{                                                                                      \
    if (!tb) {   /* op(B)[p, j] = B[p, j]: 8 rows of B at a time, each walked          \
                    across all panels: 8 sequential read streams, and each panel      \
                    gets 8 contiguous rows (a whole column panel walked with a       \
                    4 KB row stride, or one row scattered over panels a multiple    \
                    of 4 KB apart, would keep hitting the same cache sets) */        \
        for (long pb = 0; pb < kc; pb += 8) {                                          \
            long pe = min_l(kc, pb + 8);                                               \
            for (long q = q0; q < q1; q++) {                                           \
                long jr = q * NR, n = min_l(NR, nc - jr);                              \
                const real *src = B + (p0 + pb) * ldb + j0 + jr;                       \
                real *restrict dst = Bp + (q - qoff) * NR * kc + pb * NR;              \
                for (long p = pb; p < pe; p++, src += ldb, dst += NR) {                \
                    if (n == NR && NR * sizeof(real) == 128) memcpy(dst, src, 128);    \
                    else {                                                             \
                        for (long j = 0; j < n; j++) dst[j] = src[j];                  \
                        for (long j = n; j < NR; j++) dst[j] = 0;                      \
                    }                                                                  \
                }                                                                      \
            }                                                                          \
        }                                                                              \
        return;                                                                        \
    }                                                                                  \
    for (long q = q0; q < q1; q++) {   /* op(B)[p, j] = B[j, p]: transpose,          \
                                          32 depths at a time */                      \
        long jr = q * NR, n = min_l(NR, nc - jr);                                      \
        real *restrict dst = Bp + (q - qoff) * NR * kc;                                \
        for (long pb = 0; pb < kc; pb += 32) {                                         \
            long pe = min_l(kc, pb + 32);                                              \
            for (long j = 0; j < n; j++) {                                             \
                const real *restrict src = B + (j0 + jr + j) * ldb + p0;               \
                for (long p = pb; p < pe; p++) dst[p * NR + j] = src[p];               \
            }                                                                          \
            for (long j = n; j < NR; j++)                                              \
                for (long p = pb; p < pe; p++) dst[p * NR + j] = 0;                    \
        }                                                                              \
    }                                                                                  \
}                                                                                      \
                                                                                       \
/* Tiles [t0, t1) of an mc x nc block of C; tile t is row panel t / npj (ms rows),     \
   column panel t % npj.  B micro-panel jr is at b + jr*bstep with row stride          \
   rsb; a ragged last column panel (nc % NR) is at bedge, row stride NR. */            \
static void tiles_##SUF(const tb_kernel_##SUF *kd, long t0, long t1, long mc, long ms, \
                        long nc, long kc, const real *Ap, const real *b, long bstep, long rsb,  \
                        const real *bedge, real alpha, real beta,                      \
                        real *C, long ldc)                                             \
{                                                                                      \
    const int MR = kd->mr, NR = kd->nr;                                                \
    long npj = (nc + NR - 1) / NR;                                                     \
    real tmp[TB_MAX_MR * TB_MAX_NR] __attribute__((aligned(64)));                      \
    for (long t = t0; t < t1; t++) {                                                   \
        long ir = (t / npj) * ms, jr = (t % npj) * NR;                                 \
        int m = (int)min_l(ms, mc - ir);                                               \
        long n = min_l(NR, nc - jr);                                                   \
        const real *ap = Ap + (t / npj) * MR * kc;                                     \
        real *c = C + ir * ldc + jr;                                                   \
        tb_ukr_##SUF ukr = kd->ukr[m];                                                 \
        if (n == NR) {                                                                 \
            ukr(kc, ap, b + (jr / NR) * bstep, rsb, c, ldc, alpha, beta);              \
        } else if (kd->edge[m]) {   /* ragged edge, masked kernel */                   \
            kd->edge[m](kc, ap, b + (jr / NR) * bstep, rsb, c, ldc, alpha, beta, n);   \
        } else {   /* ragged edge: full tile into tmp, then copy n columns */          \
            const real *bp = bedge ? bedge : b + (jr / NR) * bstep;                    \
            ukr(kc, ap, bp, bedge ? NR : rsb, tmp, NR, alpha, 0);                      \
            for (int i = 0; i < m; i++) {                                              \
                real *ci = c + i * ldc;                                                \
                const real *ti = tmp + i * NR;                                         \
                if (beta == 0) for (long j = 0; j < n; j++) ci[j] = ti[j];             \
                else for (long j = 0; j < n; j++) ci[j] = ti[j] + beta * ci[j];        \
            }                                                                          \
        }                                                                              \
    }                                                                                  \
}                                                                                      \
                                                                                       \
/* Split [0, n) evenly over nt workers; worker id gets [*lo, *hi). */                  \
static void share_##SUF(long n, int nt, int id, long *lo, long *hi)                    \
{                                                                                      \
    *lo = n * id / nt;                                                                 \
    *hi = n * (id + 1) / nt;                                                           \
}                                                                                      \
                                                                                       \
/* The loop nest above, run by worker `id` of `nt` (nt == 1: serial).  With            \
   nt > 1 it must be called from inside an OpenMP parallel region by all nt            \
   threads; packing and tiles are split between them, with barriers between. */       \
static void blocked_##SUF(const tb_kernel_##SUF *kd, int nt, int id,                   \
                          int ta, int tb, long M, long N, long K, real alpha,          \
                          const real *A, long lda, const real *B, long ldb,            \
                          real beta, real *C, long ldc, int direct_b,                  \
                          real *Ap, real *Bp)                                          \
{                                                                                      \
    const int MR = kd->mr, NR = kd->nr;                                                \
    const long NC = kd->nc;                                                            \
    /* equal-sized row and depth blocks: no thin leftover block (M = 1024 with        \
       MC = 1008 would otherwise repack all of B for 16 rows) */                       \
    const long MC = round_up(balanced(M, kd->mc), MR), KC = balanced(K, kd->kc);        \
    long lo, hi;                                                                       \
    for (long ic = 0; ic < M; ic += MC) {                                              \
        long mc = min_l(MC, M - ic);                                                   \
        long npi = (mc + MR - 1) / MR;                                                 \
        /* balanced row panels: M = 16 as 8 + 8, not 14 + 2 (a 2-row panel streams    \
           all of B for little work); the packed stride stays MR */                   \
        long ms = (mc + npi - 1) / npi;                                                \
        for (long pc = 0; pc < K; pc += KC) {                                          \
            long kc = min_l(KC, K - pc);                                               \
            real beta_k = pc == 0 ? beta : 1;                                          \
            share_##SUF(npi, nt, id, &lo, &hi);                                        \
            if (!ta && kd->pack_an) kd->pack_an(A, lda, ic, pc, mc, kc, ms, lo, hi, Ap); \
            else pack_a_##SUF(ta, A, lda, ic, pc, mc, kc, MR, ms, lo, hi, Ap);         \
            for (long jc = 0; jc < N; jc += NC) {                                      \
                long nc = min_l(NC, N - jc);                                           \
                long npj = (nc + NR - 1) / NR;                                         \
                const real *b, *bedge = NULL;                                          \
                long bstep, rsb;                                                       \
                if (direct_b) {                                                        \
                    b = B + pc * ldb + jc; bstep = NR; rsb = ldb;                      \
                    if (nc % NR && !kd->edge[1]) {   /* copy the ragged panel */       \
                        if (id == 0)                                                   \
                            pack_b_##SUF(0, B, ldb, pc, jc, kc, nc, NR,                \
                                         npj - 1, npj, npj - 1, Bp);                   \
                        bedge = Bp;                                                    \
                    }                                                                  \
                } else {                                                               \
                    share_##SUF(npj, nt, id, &lo, &hi);                                \
                    if (tb && kd->pack_bt)                                             \
                        kd->pack_bt(B, ldb, pc, jc, kc, nc, lo, hi, 0, Bp);            \
                    else pack_b_##SUF(tb, B, ldb, pc, jc, kc, nc, NR, lo, hi, 0, Bp);  \
                    b = Bp; bstep = (long)NR * kc; rsb = NR;                           \
                }                                                                      \
                TB_BARRIER(nt);                                                        \
                share_##SUF(npi * npj, nt, id, &lo, &hi);                              \
                tiles_##SUF(kd, lo, hi, mc, ms, nc, kc, Ap, b, bstep, rsb, bedge,      \
                            alpha, beta_k, C + ic * ldc + jc, ldc);                    \
                TB_BARRIER(nt);                                                        \
            }                                                                          \
        }                                                                              \
    }                                                                                  \
}                                                                                      \
                                                                                       \
/* Few rows of C: run the unpacked kernels of gemm_small.h over groups of          \
   TB_SMALL_M rows (each group streams all of B; B stays in L2/L3 between          \
   groups).  Returns 0 when the blocked path should be used instead. */             \
static int small_##SUF(const tb_kernel_##SUF *kd, int ta, int tb, long M, long N,      \
                       long K, real alpha, const real *A, long lda, const real *B,     \
                       long ldb, real beta, real *C, long ldc)                         \
{                                                                                      \
    tb_small_##SUF f = tb ? kd->dots : kd->rows;                                       \
    if (!f) return 0;                                                                  \
    /* dot products pay a lane reduction per element of C: only with depth */        \
    if (tb ? M > TB_SMALL_M && (M > small_dots_max || K < 128) : M > small_rows_max)   \
        return 0;                                                                      \
    const real *a = A;                                                                 \
    long rsa = ta ? 1 : lda, csa = ta ? lda : 1;                                       \
    if (tb && ta) {   /* dots wants contiguous rows of op(A): copy them */             \
        real *At = (size_t)M * K <= ((size_t)1 << 18) ?                                \
                   (real *)workspace((size_t)M * K * sizeof(real)) : NULL;             \
        if (!At) return 0;                                                             \
        for (long i = 0; i < M; i++)                                                   \
            for (long p = 0; p < K; p++) At[i * K + p] = A[p * lda + i];               \
        a = At; rsa = K; csa = 1;                                                      \
    }                                                                                  \
    long g = balanced(M, TB_SMALL_M);   /* M = 5 as 3 + 2, not 4 + 1 */                \
    for (long i = 0; i < M; i += g)                                                    \
        f(min_l(g, M - i), N, K, alpha, a + i * rsa, rsa, csa, B, ldb,                 \
          beta, C + i * ldc, ldc);                                                     \
    return 1;                                                                          \
}                                                                                      \
                                                                                       \
void tb_gemm_##SUF(int trans_a, int trans_b, long M, long N, long K,                   \
                   real alpha, const real *A, long lda,                                \
                   const real *B, long ldb,                                            \
                   real beta, real *C, long ldc)                                       \
{                                                                                      \
    if (M <= 0 || N <= 0) return;                                                      \
    if (K <= 0 || alpha == 0) { scale_c_##SUF(M, N, beta, C, ldc); return; }           \
    const tb_kernel_##SUF *kd = &kernel()->SUF;                                        \
    if (small_##SUF(kd, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc)) \
        return;                                                                        \
    const int MR = kd->mr, NR = kd->nr;                                                \
    long kc = balanced(K, kd->kc);                                                     \
    long mc = round_up(balanced(M, kd->mc), MR);                                       \
    int direct_b = !trans_b && (M <= (long)direct_b_panels * MR                        \
                                || (double)K * N * sizeof(real) <= DIRECT_B_BYTES);   \
    long nb = direct_b ? NR : round_up(min_l(kd->nc, N), NR);                          \
    size_t a_elems = (size_t)round_up(mc * kc, 64 / sizeof(real));                     \
    real *ws = (real *)workspace((a_elems + (size_t)nb * kc) * sizeof(real));          \
    if (!ws) {   /* out of memory: the reference still gives the right answer */       \
        tb_gemm_ref_##SUF(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb,            \
                          beta, C, ldc);                                               \
        return;                                                                        \
    }                                                                                  \
    real *Ap = ws, *Bp = ws + a_elems;                                                 \
    int nt = tb_get_num_threads();                                                     \
    if (nt > 1 && (double)M * N * K >= (double)PARALLEL_MIN_WORK) {                    \
        TB_PARALLEL(nt, blocked_##SUF(kd, nt_, id_, trans_a, trans_b, M, N, K, alpha,  \
                                      A, lda, B, ldb, beta, C, ldc, direct_b, Ap, Bp)); \
    } else {                                                                           \
        blocked_##SUF(kd, 1, 0, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb,      \
                      beta, C, ldc, direct_b, Ap, Bp);                                 \
    }                                                                                  \
}

#ifdef _OPENMP
#define TB_BARRIER(nt) do { if ((nt) > 1) { _Pragma("omp barrier") } } while (0)
#define TB_PARALLEL(nt, call)                                                          \
    do {                                                                               \
        _Pragma("omp parallel num_threads(nt)")                                        \
        {                                                                              \
            int nt_ = omp_get_num_threads(), id_ = omp_get_thread_num();               \
            call;                                                                      \
        }                                                                              \
    } while (0)
#else
#define TB_BARRIER(nt) ((void)0)
#define TB_PARALLEL(nt, call)                                                          \
    do { int nt_ = 1, id_ = 0; call; } while (0)
#endif

DEFINE_GEMM(float, f32)
DEFINE_GEMM(double, f64)

/* ------------------------------------------------------------------ */
/* Batched product: C[s] = A[s] @ B[s] for s < S, one GEMM per matrix */
/* ------------------------------------------------------------------ */

#define DEFINE_BMM(real, SUF)                                                          \
int tb_bmm_##SUF(long S, long M, long N, long K, const real *A, const real *B, real *C) \
{                                                                                      \
    for (long s = 0; s < S; s++)                                                       \
        tb_gemm_##SUF(0, 0, M, N, K, 1, A + s * M * K, K, B + s * K * N, N,            \
                      0, C + s * M * N, N);                                            \
    return 0;                                                                          \
}

DEFINE_BMM(float, f32)
DEFINE_BMM(double, f64)
