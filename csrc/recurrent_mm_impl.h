/* recurrent_mm_impl.h -- the per-step product's typed half, written once over
 * `real` (a template: see for_each_dtype.h; instantiated by recurrent_mm.c,
 * which holds the tiles, the dispatch and the explanation). */

/* The plain loop the tests compare against: C (M, N) = [C] + [init] + A (M, K) @ op(W) (K, N). */
void FN(tb_recurrent_mm_ref)(long M, long N, long K,
                             const real *A, long lda,  /* (M, K) */
                             const real *W, long ldw,  /* op(W) (K, N): W (K, N), or (N, K) if trans */
                             int trans,
                             real *C, long ldc,        /* (M, N) */
                             int accumulate, const real *init) /* init (N,) or NULL */
{
    for (long i = 0; i < M; i++)
        for (long j = 0; j < N; j++) {
            real s = (accumulate ? C[i * ldc + j] : (real)0) + (init ? init[j] : (real)0);
            for (long k = 0; k < K; k++)
                s += A[i * lda + k] * (trans ? W[j * ldw + k] : W[k * ldw + j]);
            C[i * ldc + j] = s;
        }
}

/* P (ceil(N/vl) panels of (K, vl)) from op(W) (K, N): W[k*ldw + n], or
   W[n*ldw + k] if trans; zero-padded past N. */
static void FN(pack_into)(long K, long N, long vl, const real *W, long ldw, int trans, real *P)
{
    long nq = (N + vl - 1) / vl;
    for (long q = 0; q < nq; q++) {
        real *pq = P + q * K * vl;
        long n0 = q * vl, w = N - n0 < vl ? N - n0 : vl;
        if (trans) {
            if (w < vl) memset(pq, 0, (size_t)(K * vl) * sizeof(real));
            /* rows n0+j of W (contiguous in k) go down the panel's column j; whole
               groups of 8 rows by register blocks where the CPU has them (pack_t8,
               the speed device in recurrent_mm.c), the rest four at a time, so that
               each k stores four neighbours (one row at a time stored one value per
               cache line, and ran 2x slower or faster with the loop's address) */
            long j = FN(pack_t8)(K, w, vl, W + n0 * ldw, ldw, pq);
            for (; j + 4 <= w; j += 4) {
                const real *s0 = W + (n0 + j) * ldw, *s1 = s0 + ldw, *s2 = s1 + ldw, *s3 = s2 + ldw;
                for (long k = 0; k < K; k++) {
                    real *d = pq + k * vl + j;
                    d[0] = s0[k]; d[1] = s1[k]; d[2] = s2[k]; d[3] = s3[k];
                }
            }
            for (; j < w; j++) {
                const real *src = W + (n0 + j) * ldw;
                for (long k = 0; k < K; k++) pq[k * vl + j] = src[k];
            }
        } else {
            for (long k = 0; k < K; k++) {
                const real *src = W + k * ldw + n0;
                real *dst = pq + k * vl;
                long j = 0;
                for (; j < w; j++) dst[j] = src[j];
                for (; j < vl; j++) dst[j] = 0;
            }
        }
    }
}

/* values in the packed panels of op(W) (K, N) */
long FN(panel_elems)(long K, long N)
{
    long vl = mm_impl()->FN(vl);
    return (N + vl - 1) / vl * K * vl;
}

/* Pack op(W) into buf (panel_elems values, the caller's); not owned by P */
void FN(panel_pack_into)(panel *P, long K, long N, const real *W, long ldw, int trans, real *buf)
{
    long vl = mm_impl()->FN(vl);
    FN(pack_into)(K, N, vl, W, ldw, trans, buf);
    P->p = buf; P->K = K; P->N = N; P->vl = vl; P->qs = K * vl; P->ks = vl; P->owned = 0;
}

int FN(panel_pack)(panel *P, long K, long N, const real *W, long ldw, int trans)
{
    long vl = mm_impl()->FN(vl);
    if (!trans && N % vl == 0 && (double)K * N * sizeof(real) <= DIRECT_MAX_BYTES) {
        /* W's rows are whole panels already: read in place (a big W is packed anyway:
           walking its rows a page apart per k misses the TLB at every step) */
        P->p = W; P->K = K; P->N = N; P->vl = vl; P->qs = vl; P->ks = ldw; P->owned = 0;
        return 0;
    }
    real *p = (real *)tb_scratch(TB_SLOT_PANEL, (size_t)FN(panel_elems)(K, N) * sizeof(real));
    if (!p) return 1;
    FN(panel_pack_into)(P, K, N, W, ldw, trans, p);
    P->owned = 1;
    return 0;
}

void FN(panel_mm)(long M, const real *A, long lda, const panel *P,
                  real *C, long ldc, int accumulate, const real *init)
{
    if (M <= 0 || P->N <= 0) return;
    if (P->K <= 0) {  /* empty product: C = [C] + [init] */
        for (long i = 0; i < M; i++)
            for (long j = 0; j < P->N; j++)
                C[i * ldc + j] = (accumulate ? C[i * ldc + j] : (real)0) + (init ? init[j] : (real)0);
        return;
    }
    mm_impl()->FN(mm)(M, P->N, P->K, A, lda, (const real *)P->p, P->qs, P->ks, C, ldc, accumulate, init);
}

/* The test and benchmark entry point: pack once, run the product `reps` times. */
int FN(tb_recurrent_mm)(long M, long N, long K, const real *A, long lda,
                        const real *W, long ldw, int trans, real *C, long ldc,
                        int accumulate, const real *init, long reps)
{
    panel P = PANEL_NONE;
    if (FN(panel_pack)(&P, K, N, W, ldw, trans)) return 1;
    for (long r = 0; r < reps; r++) FN(panel_mm)(M, A, lda, &P, C, ldc, accumulate, init);
    panel_free(&P);
    return 0;
}
