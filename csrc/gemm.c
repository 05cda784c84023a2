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
 * Scratch memory comes from the runtime's per-thread buffers (runtime.h:
 * grown on demand, bounded by the block sizes, freed at thread exit), so calls
 * do not malloc after warm-up and the library stays thread-safe; if it cannot
 * be had, tb_gemm returns nonzero.  With tb_set_num_threads(n > 1) and OpenMP,
 * a large product (which ones: tb_threads_for in runtime.c) is cut into
 * slices of C, one per thread, each computed as above (sliced in
 * gemm_impl.h); one thread is the default.
 *
 * The code is written once over `real` in gemm_impl.h; this file holds the
 * tuning constants, the choice of micro-kernel and the untyped helpers, and
 * instantiates the template for float and double at the end.
 */
#include <stdlib.h>
#include <string.h>
#include "runtime.h"
#include "gemm_kernels.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* When op(B) = B, the micro-kernel reads B in place (no packing) if M is at
   most this many MR-panels (little reuse to pay for packing) or if all of B
   fits in about half an L2 (it then stays cached however it is walked).
   10 panels (140 rows with MR = 14) rather than 8 covers the weight-gradient
   product of a sequence with I + H = 128, [X | H_prev]^T @ dgates: reading
   dgates in place instead of packing it took 10% off that product at
   T*B = 8000 and 6% at T*B = 1600 (LSTM, I = H = 64, CPU samples in the
   backward pass, Zen 4). */
#define DIRECT_B_PANELS 10
#define DIRECT_B_BYTES (512.0 * 1024)
/* Up to this many rows use the unpacked kernels of gemm_small.h (rows of B
   streamed when op(B) = B; dot products when op(B) = B^T, from 5 rows on only
   if K >= 128).  Measured on Zen 4 against the blocked path. */
#define SMALL_ROWS_MAX 5
#define SMALL_DOTS_MAX 16

/* ------------------------------------------------------------------ */
/* Micro-kernel for the instruction set in use (runtime.c chooses it)  */
/* ------------------------------------------------------------------ */

#ifdef TB_GEMM_TUNING
/* Developer build only (-DTB_GEMM_TUNING): override the cache blocks with
   TB_GEMM_BLOCKS="kc32,mc32,nc32,kc64,mc64,nc64" and the in-place-B row
   limit (in MR panels) with TB_GEMM_DIRECT, read at the first GEMM. */
#include <stdio.h>
static tb_gemm_kernel tuned;
static int direct_b_panels = DIRECT_B_PANELS;
static long small_rows_max = SMALL_ROWS_MAX, small_dots_max = SMALL_DOTS_MAX;
static const tb_gemm_kernel *tune(const tb_gemm_kernel *k)
{
    static const tb_gemm_kernel *from;   /* the kernel `tuned` was made from */
    if (k == from) return &tuned;
    from = k;
    tuned = *k;
    const char *e = getenv("TB_GEMM_BLOCKS");
    if (getenv("TB_GEMM_DIRECT")) direct_b_panels = atoi(getenv("TB_GEMM_DIRECT"));
    if (getenv("TB_GEMM_ROWS")) small_rows_max = atol(getenv("TB_GEMM_ROWS"));
    if (getenv("TB_GEMM_DOTS")) small_dots_max = atol(getenv("TB_GEMM_DOTS"));
    if (e)
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

/* The micro-kernel of the runtime's instruction set; one compiled without it
   (TB_NO_AVX512, a non-x86 target) falls back to the next one down. */
static const tb_gemm_kernel *kernel(void)
{
    const tb_gemm_kernel *k = NULL;
    switch (tb_isa()) {
    case TB_ISA_AVX512: k = tb_gemm_kernel_avx512(); if (k) break; /* fall through */
    case TB_ISA_AVX2: k = tb_gemm_kernel_avx2(); if (k) break; /* fall through */
    default: k = tb_gemm_kernel_portable();
    }
    return tune(k);
}

const char *tb_gemm_kernel_name(void) { return kernel()->name; }

/* ------------------------------------------------------------------ */
/* Blocked GEMM                                                       */
/* ------------------------------------------------------------------ */

static long min_l(long a, long b) { return a < b ? a : b; }
static long round_up(long a, long b) { return (a + b - 1) / b * b; }
/* Block size <= blk that splits n into equal pieces: ceil(n / ceil(n / blk)). */
static long balanced(long n, long blk)
{
    long pieces = (n + blk - 1) / blk;
    return (n + pieces - 1) / pieces;
}

/* Split [0, n) evenly over nt workers; worker id gets [*lo, *hi). */
static void share(long n, int nt, int id, long *lo, long *hi)
{
    *lo = n * id / nt;
    *hi = n * (id + 1) / nt;
}

/* TB_PARALLEL(nt, body): body run by nt threads, each with its count nt_ and
   number id_ (once, with nt_ = 1, without OpenMP). */
#ifdef _OPENMP
#define TB_PARALLEL(nt, ...)                                                           \
    do {                                                                               \
        _Pragma("omp parallel num_threads(nt)")                                        \
        {                                                                              \
            int nt_ = omp_get_num_threads(), id_ = omp_get_thread_num();               \
            __VA_ARGS__                                                                \
        }                                                                              \
    } while (0)
#else
#define TB_PARALLEL(nt, ...)                                                           \
    do { int nt_ = 1, id_ = 0; __VA_ARGS__ } while (0)
#endif

#define TB_TEMPLATE "gemm_impl.h"
#include "for_each_dtype.h"
