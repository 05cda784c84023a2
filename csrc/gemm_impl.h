/* gemm_impl.h -- the GEMM written once over the type `real` (see gemm.c for
 * the algorithm and for_each_dtype.h for how a template is instantiated).
 *
 *   tb_gemm_ref  the plain triple loop, the oracle of the tests;
 *   tb_gemm      the blocked GEMM the library calls;
 *   tb_bmm       a batch of products, one tb_gemm each.
 */

void FN(tb_gemm_ref)(int trans_a, int trans_b, long M, long N, long K,
                     real alpha, const real *A, long lda,
                     const real *B, long ldb,
                     real beta, real *C, long ldc)
{
    for (long i = 0; i < M; i++) {
        for (long j = 0; j < N; j++) {
            real acc = 0;
            for (long k = 0; k < K; k++) {
                real a = trans_a ? A[k * lda + i] : A[i * lda + k];
                real b = trans_b ? B[j * ldb + k] : B[k * ldb + j];
                acc += a * b;
            }
            C[i * ldc + j] = alpha * acc + (beta == 0 ? 0 : beta * C[i * ldc + j]);
        }
    }
}

/* C = beta * C over an M x N block, never reading C when beta == 0. */
static void FN(scale_c)(long M, long N, real beta, real *C, long ldc)
{
    for (long i = 0; i < M; i++) {
        real *c = C + i * ldc;
        if (beta == 0) memset(c, 0, (size_t)N * sizeof(real));
        else if (beta != 1) for (long j = 0; j < N; j++) c[j] *= beta;
    }
}

/* Pack micro-panels [q0, q1) of op(A)[i0:+mc, p0:+kc]: panel q holds the ms (<= MR)
   rows q*ms.. as Ap[q*MR*kc + p*MR + i].  Rows past ms (or mc) are left unwritten:
   the m-row kernel instance never reads them. */
static void FN(pack_a)(int ta, const real *A, long lda, long i0, long p0,
                       long mc, long kc, int MR, long ms, long q0, long q1,
                       real *Ap)
{
    if (ta) {   /* op(A)[i, p] = A[p, i]: walk the rows of A, each one contiguous
                   across all panels (a row stride of 4 KB walked down one panel
                   would keep hitting the same cache sets) */
        for (long p = 0; p < kc; p++) {
            const real *restrict src = A + (p0 + p) * lda + i0;
            for (long q = q0; q < q1; q++) {
                long ir = q * ms, m = min_l(ms, mc - ir);
                real *restrict dst = Ap + q * MR * kc + p * MR;
                for (long i = 0; i < m; i++) dst[i] = src[ir + i];
            }
        }
        return;
    }
    for (long q = q0; q < q1; q++) {
        long ir = q * ms, m = min_l(ms, mc - ir);
        real *restrict dst = Ap + q * MR * kc;
        for (long i = 0; i < m; i++) {
            const real *restrict src = A + (i0 + ir + i) * lda + p0;
            for (long p = 0; p < kc; p++) dst[p * MR + i] = src[p];
        }
    }
}

/* Pack micro-panels [q0, q1) of op(B)[p0:+kc, j0:+nc]: panel q holds columns
   q*NR.. as Bp[(q-qoff)*NR*kc + p*NR + j], zero-padded past nc. */
static void FN(pack_b)(int tb, const real *B, long ldb, long p0, long j0,
                       long kc, long nc, int NR, long q0, long q1, long qoff,
                       real *Bp)
{
    if (!tb) {   /* op(B)[p, j] = B[p, j]: 8 rows of B at a time, each walked
                    across all panels: 8 sequential read streams, and each panel
                    gets 8 contiguous rows (a whole column panel walked with a
                    4 KB row stride, or one row scattered over panels a multiple
                    of 4 KB apart, would keep hitting the same cache sets) */
        for (long pb = 0; pb < kc; pb += 8) {
            long pe = min_l(kc, pb + 8);
            for (long q = q0; q < q1; q++) {
                long jr = q * NR, n = min_l(NR, nc - jr);
                const real *src = B + (p0 + pb) * ldb + j0 + jr;
                real *restrict dst = Bp + (q - qoff) * NR * kc + pb * NR;
                for (long p = pb; p < pe; p++, src += ldb, dst += NR) {
                    if (n == NR && NR * sizeof(real) == 128) memcpy(dst, src, 128);
                    else {
                        for (long j = 0; j < n; j++) dst[j] = src[j];
                        for (long j = n; j < NR; j++) dst[j] = 0;
                    }
                }
            }
        }
        return;
    }
    for (long q = q0; q < q1; q++) {   /* op(B)[p, j] = B[j, p]: transpose,
                                          32 depths at a time */
        long jr = q * NR, n = min_l(NR, nc - jr);
        real *restrict dst = Bp + (q - qoff) * NR * kc;
        for (long pb = 0; pb < kc; pb += 32) {
            long pe = min_l(kc, pb + 32);
            for (long j = 0; j < n; j++) {
                const real *restrict src = B + (j0 + jr + j) * ldb + p0;
                for (long p = pb; p < pe; p++) dst[p * NR + j] = src[p];
            }
            for (long j = n; j < NR; j++)
                for (long p = pb; p < pe; p++) dst[p * NR + j] = 0;
        }
    }
}

/* Tiles [t0, t1) of an mc x nc block of C; tile t is row panel t / npj (ms rows),
   column panel t % npj.  B micro-panel jr is at b + jr*bstep with row stride
   rsb; a ragged last column panel (nc % NR) is at bedge, row stride NR. */
static void FN(tiles)(const FN(tb_kernel) *kd, long t0, long t1, long mc, long ms,
                      long nc, long kc, const real *Ap, const real *b, long bstep, long rsb,
                      const real *bedge, real alpha, real beta,
                      real *C, long ldc)
{
    const int MR = kd->mr, NR = kd->nr;
    long npj = (nc + NR - 1) / NR;
    real tmp[TB_MAX_MR * TB_MAX_NR] __attribute__((aligned(64)));
    for (long t = t0; t < t1; t++) {
        long ir = (t / npj) * ms, jr = (t % npj) * NR;
        int m = (int)min_l(ms, mc - ir);
        long n = min_l(NR, nc - jr);
        const real *ap = Ap + (t / npj) * MR * kc;
        real *c = C + ir * ldc + jr;
        FN(tb_ukr) ukr = kd->ukr[m];
        if (n == NR) {
            ukr(kc, ap, b + (jr / NR) * bstep, rsb, c, ldc, alpha, beta);
        } else if (kd->edge[m]) {   /* ragged edge, masked kernel */
            kd->edge[m](kc, ap, b + (jr / NR) * bstep, rsb, c, ldc, alpha, beta, n);
        } else {   /* ragged edge: full tile into tmp, then copy n columns */
            const real *bp = bedge ? bedge : b + (jr / NR) * bstep;
            ukr(kc, ap, bp, bedge ? NR : rsb, tmp, NR, alpha, 0);
            for (int i = 0; i < m; i++) {
                real *ci = c + i * ldc;
                const real *ti = tmp + i * NR;
                if (beta == 0) for (long j = 0; j < n; j++) ci[j] = ti[j];
                else for (long j = 0; j < n; j++) ci[j] = ti[j] + beta * ci[j];
            }
        }
    }
}

/* The loop nest above, on one thread (see sliced for two or more). */
static void FN(blocked)(const FN(tb_kernel) *kd,
                        int ta, int tb, long M, long N, long K, real alpha,
                        const real *A, long lda, const real *B, long ldb,
                        real beta, real *C, long ldc, int direct_b,
                        real *Ap, real *Bp)
{
    const int MR = kd->mr, NR = kd->nr;
    const long NC = kd->nc;
    /* equal-sized row and depth blocks: no thin leftover block (M = 1024 with
       MC = 1008 would otherwise repack all of B for 16 rows) */
    const long MC = round_up(balanced(M, kd->mc), MR), KC = balanced(K, kd->kc);
    for (long ic = 0; ic < M; ic += MC) {
        long mc = min_l(MC, M - ic);
        long npi = (mc + MR - 1) / MR;
        /* balanced row panels: M = 16 as 8 + 8, not 14 + 2 (a 2-row panel streams
           all of B for little work); the packed stride stays MR */
        long ms = (mc + npi - 1) / npi;
        for (long pc = 0; pc < K; pc += KC) {
            long kc = min_l(KC, K - pc);
            real beta_k = pc == 0 ? beta : 1;
            if (!ta && kd->pack_an) kd->pack_an(A, lda, ic, pc, mc, kc, ms, 0, npi, Ap);
            else if (ta && kd->pack_at) kd->pack_at(A, lda, ic, pc, mc, kc, ms, 0, npi, Ap);
            else FN(pack_a)(ta, A, lda, ic, pc, mc, kc, MR, ms, 0, npi, Ap);
            for (long jc = 0; jc < N; jc += NC) {
                long nc = min_l(NC, N - jc);
                long npj = (nc + NR - 1) / NR;
                const real *b, *bedge = NULL;
                long bstep, rsb;
                if (direct_b) {
                    b = B + pc * ldb + jc; bstep = NR; rsb = ldb;
                    if (nc % NR && !kd->edge[1]) {   /* copy the ragged panel */
                        FN(pack_b)(0, B, ldb, pc, jc, kc, nc, NR, npj - 1, npj, npj - 1, Bp);
                        bedge = Bp;
                    }
                } else {
                    if (tb && kd->pack_bt)
                        kd->pack_bt(B, ldb, pc, jc, kc, nc, 0, npj, 0, Bp);
                    else FN(pack_b)(tb, B, ldb, pc, jc, kc, nc, NR, 0, npj, 0, Bp);
                    b = Bp; bstep = (long)NR * kc; rsb = NR;
                }
                FN(tiles)(kd, 0, npi * npj, mc, ms, nc, kc, Ap, b, bstep, rsb, bedge,
                            alpha, beta_k, C + ic * ldc + jc, ldc);
            }
        }
    }
}

/* Few rows of C: run the unpacked kernels of gemm_small.h over groups of
   TB_SMALL_M rows (each group streams all of B; B stays in L2/L3 between
   groups).  Returns 1 when done, 0 when the blocked path should be used
   instead, -1 if out of memory. */
static int FN(small)(const FN(tb_kernel) *kd, int ta, int tb, long M, long N,
                     long K, real alpha, const real *A, long lda, const real *B,
                     long ldb, real beta, real *C, long ldc)
{
    FN(tb_small) f = tb ? kd->dots : kd->rows;
    if (!f) return 0;
    /* dot products pay a lane reduction per element of C: only with depth */
    if (tb ? M > TB_SMALL_M && (M > small_dots_max || K < 128) : M > small_rows_max)
        return 0;
    const real *a = A;
    long rsa = ta ? 1 : lda, csa = ta ? lda : 1;
    if (tb && ta) {   /* dots wants contiguous rows of op(A): copy them */
        if ((size_t)M * K > ((size_t)1 << 18)) return 0;
        real *At = (real *)tb_scratch(TB_SLOT_GEMM, (size_t)M * K * sizeof(real));
        if (!At) return -1;
        for (long i = 0; i < M; i++)
            for (long p = 0; p < K; p++) At[i * K + p] = A[p * lda + i];
        a = At; rsa = K; csa = 1;
    }
    long g = balanced(M, TB_SMALL_M);   /* M = 5 as 3 + 2, not 4 + 1 */
    for (long i = 0; i < M; i += g)
        f(min_l(g, M - i), N, K, alpha, a + i * rsa, rsa, csa, B, ldb,
          beta, C + i * ldc, ldc);
    return 1;
}

/* The blocked GEMM on the calling thread, with its own scratch; nonzero if
   that could not be had. */
static int FN(one)(const FN(tb_kernel) *kd, int ta, int tb, long M, long N, long K,
                   real alpha, const real *A, long lda, const real *B, long ldb,
                   real beta, real *C, long ldc)
{
    const int MR = kd->mr, NR = kd->nr;
    long kc = balanced(K, kd->kc);
    long mc = round_up(balanced(M, kd->mc), MR);
    int direct_b = !tb && (M <= (long)direct_b_panels * MR
                           || (double)K * N * sizeof(real) <= DIRECT_B_BYTES);
    long nb = direct_b ? NR : round_up(min_l(kd->nc, N), NR);
    size_t a_elems = (size_t)round_up(mc * kc, 64 / sizeof(real));
    real *ws = (real *)tb_scratch(TB_SLOT_GEMM, (a_elems + (size_t)nb * kc) * sizeof(real));
    if (!ws) return 1;
    FN(blocked)(kd, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, direct_b, ws, ws + a_elems);
    return 0;
}

/* Two or more threads: each runs the one-thread GEMM on its own slice of C,
   whole NR-column panels (or MR-row panels, when C is taller than wide), with
   its own scratch.  Each thread packs the operand the slices share (op(A) for
   column slices) in full, which costs little beside the product; in return
   no thread waits for another between blocks, and none reads a block that
   another core packed.  Every element of C is computed as on one thread.
   (The split it replaced shared each block's packing and tiles between the
   threads, with a barrier after each.)  Measured on an AMD EPYC (Zen 4),
   2 cores, float32, shared blocks -> slices, 1-thread time / 2-thread time:
   the LSTM's weight-gradient products at T = 100, B = 32, I = H = 256
   ((256, 3200) x (3200, 1024)) 1.67-1.80 -> 1.85-1.88; at I = H = 512, B = 64
   1.58-1.89 -> 1.72-1.94; the LSTM sequence backward at I = H = 256 on two
   threads 32.2, 41.1, 38.6 -> 31.7, 36.6, 33.6 ms (three alternating pairs). */
static int FN(sliced)(const FN(tb_kernel) *kd, int nt, int ta, int tb, long M, long N, long K,
                      real alpha, const real *A, long lda, const real *B, long ldb,
                      real beta, real *C, long ldc)
{
    int by_rows = M > N, err = 0;
    long unit = by_rows ? kd->mr : kd->nr, n = by_rows ? M : N;
    TB_PARALLEL(nt, {
        long lo, hi;
        share((n + unit - 1) / unit, nt_, id_, &lo, &hi);
        lo *= unit;
        hi = min_l(hi * unit, n);
        if (lo < hi && (by_rows ? FN(one)(kd, ta, tb, hi - lo, N, K, alpha, ta ? A + lo : A + lo * lda, lda,
                                          B, ldb, beta, C + lo * ldc, ldc)
                                : FN(one)(kd, ta, tb, M, hi - lo, K, alpha, A, lda, tb ? B + lo * ldb : B + lo,
                                          ldb, beta, C + lo, ldc)))
            __atomic_store_n(&err, 1, __ATOMIC_RELAXED);
    });
    return err;
}

int FN(tb_gemm)(int trans_a, int trans_b, long M, long N, long K,
                real alpha, const real *A, long lda,
                const real *B, long ldb,
                real beta, real *C, long ldc)
{
    if (M <= 0 || N <= 0) return 0;
    if (K <= 0 || alpha == 0) { FN(scale_c)(M, N, beta, C, ldc); return 0; }
    const FN(tb_kernel) *kd = &kernel()->SUF;
    int done = FN(small)(kd, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    if (done) return done < 0;
    double bytes = ((double)M * K + (double)K * N + (double)M * N) * sizeof(real);
    int nt = tb_threads_for((double)M * N * K, bytes);   /* the rule: runtime.c */
    if (nt > 1)
        return FN(sliced)(kd, nt, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return FN(one)(kd, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

/* The batched product: one GEMM per matrix, the loop over the batch here in C. */
int FN(tb_bmm)(long S, long M, long N, long K, const real *A, const real *B, real *C)
{
    for (long s = 0; s < S; s++)
        if (FN(tb_gemm)(0, 0, M, N, K, 1, A + s * M * K, K, B + s * K * N, N,
                        0, C + s * M * N, N))
            return 1;
    return 0;
}
