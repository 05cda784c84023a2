/* recurrent_impl.h -- the helpers the three cells share, written once over
 * `real` (a template: see for_each_dtype.h; instantiated by recurrent_common.h).
 */

/* ---- the per-step product over a packed W_hh (recurrent_mm_impl.h) */

/* Pack op(W) (K, N) into P (see `panel` in recurrent_common.h); nonzero if out of memory. */
int FN(panel_pack)(panel *P, long K, long N, const real *W, long ldw, int trans);
/* How many values a packed op(W) (K, N) takes, and the packing into a buffer
   of that size the caller owns (for a second panel beside the one in
   TB_SLOT_PANEL; panel_free leaves the buffer alone). */
long FN(panel_elems)(long K, long N);
void FN(panel_pack_into)(panel *P, long K, long N, const real *W, long ldw, int trans, real *buf);
/* C (M, N) = [C if accumulate] + [init (N,) if not NULL] + A (M, K) @ op(W). */
void FN(panel_mm)(long M, const real *A, long lda, const panel *P,
                  real *C, long ldc, int accumulate, const real *init);

/* ---- small loops */

/* A[i, :] += b1 + b2 for each of M rows of N; NULL biases count as zeros.
   The NULL tests sit outside the loops, which stay branch-free. */
static void FN(cell_add_bias_rows)(long M, long N,
                                   real *A,        /* (M, N) */
                                   const real *b1, /* (N,) or NULL */
                                   const real *b2) /* (N,) or NULL */
{
    if (!b1) { b1 = b2; b2 = NULL; }
    if (!b1) return;
    for (long i = 0; i < M; i++) {
        real *restrict a = A + i * N;
        if (b2) for (long j = 0; j < N; j++) a[j] += b1[j] + b2[j];
        else    for (long j = 0; j < N; j++) a[j] += b1[j];
    }
}

/* y += x over n elements; nothing if x is NULL */
static void FN(cell_add)(long n, real *restrict y, const real *restrict x)
{
    if (!x) return;
    for (long k = 0; k < n; k++) y[k] += x[k];
}

/* dst = src over n elements; nothing if dst is NULL (an unrequested trace) */
static void FN(cell_record)(long n, real *dst, const real *src)
{
    if (dst) memcpy(dst, src, (size_t)n * sizeof(real));
}

/* out[j] += sum_i A[i, j] over M rows of N columns (row stride lda);
   a NULL out is skipped (bias=False) */
static void FN(cell_colsum_acc)(long M, long N,
                                const real *A, long lda, /* (M, N) */
                                real *out)               /* (N,) or NULL */
{
    if (!out) return;
    for (long i = 0; i < M; i++) {
        const real *a = A + i * lda;
        for (long j = 0; j < N; j++) out[j] += a[j];
    }
}

/* dst = src, or zeros when src is NULL */
static void FN(cell_copy_or_zero)(long n, const real *src, real *dst)
{
    if (src) memcpy(dst, src, (size_t)n * sizeof(real));
    else memset(dst, 0, (size_t)n * sizeof(real));
}

/* b = b1 + b2 (either may be NULL); returns b, or NULL when both are NULL */
static const real *FN(cell_bias_sum)(long n, const real *b1, const real *b2, real *b)
{
    if (!b1 && !b2) return NULL;
    for (long j = 0; j < n; j++) b[j] = (b1 ? b1[j] : (real)0) + (b2 ? b2[j] : (real)0);
    return b;
}

/* db[j] += v[j] over n elements, then db2[j] += v[j] (each skipped if NULL) */
static void FN(cell_add2)(long n, real *db, real *db2, const real *v)
{
    if (db) for (long j = 0; j < n; j++) db[j] += v[j];
    if (db2) for (long j = 0; j < n; j++) db2[j] += v[j];
}

/* ---- tiny gradients: the carried gradient as scaled values times 2^e

   A sequence backward is linear in the gradient it carries from step to step
   (dh, and dc for the LSTM), so it may carry that gradient as scaled values
   times 2^e.  Each row of the (B, H) block -- one sequence of the batch --
   has its own integer e[b] (its dh and dc share it).  When a row's largest
   |entry| f * 2^k (f in [0.5, 1)) drifts to |k| > TB_RENORM_EXP,
   renorm_carry multiplies that row by 2^-k and adds k to e[b].  A product
   with a power of two is exact unless it under- or overflows, so
   - while nothing under- or overflows, the arithmetic is the plain
     kernel's, bit for bit, whether or not any e moved;
   - when the gradient vanishes (or explodes) through time, the recurrence
     keeps working on numbers near 1: float keeps its 24 bits at a true size
     of 1e-40 or 1e-200, and no row sinks into the subnormal range, where
     some CPUs charge around 100 cycles per operation.
   Why one exponent per row and not one for the block: the rows are
   separate sequences, and their gradients shrink at their own rates.  With
   one e for the block, set by its largest row, a row that had fallen 2^126
   below it went subnormal and then to zero while the other still counted:
   an RNN over T = 1000 steps, B = 4, H = 32, float32, whose rows' inputs
   differ in scale, kept one row's gradient down to 1e-107 at the middle
   step, and there returned zeros for another row and values computed from
   subnormals for the other two (tests/test_trace_rows.py).
   What leaves the recurrence -- each step's dgates (for the weight gradients
   and dx), dh0 and dc0 -- is brought back to true scale (renorm_scale_rows
   by e), and there a result below the smallest normal number becomes zero,
   whatever the CPU's flush-to-zero setting (decided before multiplying, so
   no subnormal is formed there either).  That is where the result differs
   from plain IEEE arithmetic: by less than 2^-126 (float) per entry, below
   the resolution of any sum of normal size it joins.  The per-step trace
   leaves as scaled values plus each step's exponents, one per row
   (trace_exp (T, B)), so the caller can report true sizes that the type
   itself cannot hold.
*/

/* the largest |entry| of x and (unless NULL) y, n entries each; NaN if any
   entry is NaN.  Taken over the bits (|x| orders like its bit pattern, NaN's
   above inf's), so that it vectorises.  Inline, so that each caller compiled
   per instruction set (renorm_carry runs it on every row at every step)
   gets its own vector loop. */
static inline real FN(renorm_absmax)(long n, const real *x, const real *y)
{
    const ubits mask = ~(ubits)0 >> 1;
    const ubits *u = (const ubits *)x, *w = (const ubits *)y;
    ubits m = 0;
    real top;
    for (long j = 0; j < n; j++) { ubits a = u[j] & mask; m = a > m ? a : m; }
    if (w) for (long j = 0; j < n; j++) { ubits a = w[j] & mask; m = a > m ? a : m; }
    memcpy(&top, &m, sizeof top);
    return top;
}

/* m is in the safe range: 2^-TB_RENORM_EXP <= m < 2^TB_RENORM_EXP (false for NaN) */
static inline int FN(renorm_safe)(real m)
{
    return m >= (real)ldexp(1.0, -TB_RENORM_EXP) && m < (real)ldexp(1.0, TB_RENORM_EXP);
}

/* k with m = f * 2^k, f in [0.5, 1) (frexp's); 0 when m is 0, inf or NaN:
   a block whose largest entry is one of those is left to IEEE arithmetic */
static int FN(renorm_exponent)(real m)
{
    int k = 0;
    if (m != 0 && isfinite(m)) frexp(m, &k);
    return k;
}

/* x * 2^s, for any integer s, as a threshold and up to three factors:
   |x| < *thr means x * 2^s is below the smallest normal number (the caller
   makes it 0 BEFORE multiplying, so that no subnormal is ever formed), and
   otherwise x * f[0] * ... is x * 2^s exactly, each factor a normal number
   (2^s itself may not be one).  Returns how many factors (0 for s = 0).
   Beyond 3 times the largest exponent every nonzero finite x * 2^s is 0 or
   inf anyway, so s is clamped. */
static int FN(renorm_factors)(long s, real f[3], real *thr)
{
    const long maxe = (sizeof(real) == 4 ? FLT_MAX_EXP : DBL_MAX_EXP) - 2;
    const double tiny = sizeof(real) == 4 ? FLT_MIN : DBL_MIN;
    int nf = 0;
    *thr = 0;
    if (s == 0) return 0;  /* the plain path: no libm call */
    s = s < -3 * maxe ? -3 * maxe : s > 3 * maxe ? 3 * maxe : s;
    *thr = (real)ldexp(tiny, (int)-s);  /* inf (all flushed) or 0 (none) where out of range */
    while (s != 0) {
        long k = s < -maxe ? -maxe : s > maxe ? maxe : s;
        f[nf++] = (real)ldexp(1.0, (int)k);
        s -= k;
    }
    return nf;
}

/* v * 2^s from renorm_factors' threshold and factors: 0 (of v's sign) when
   below the smallest normal number, else exact; NaN and inf stay */
static inline real FN(renorm_mul)(real v, real thr, const real *f, int nf)
{
    v = v < thr && v > -thr ? v * 0 : v;
    for (int i = 0; i < nf; i++) v *= f[i];
    return v;
}

/* x[j] *= 2^s over n entries (nothing if s = 0); results below the smallest
   normal number become 0.  Compiled per instruction set: while the gradient
   is carried scaled it runs over every step's dgates. */
TB_CLONES static void FN(renorm_scale)(long n, real *x, long s)
{
    real f[3], thr;
    int nf = FN(renorm_factors)(s, f, &thr);
    /* one loop per factor count, each with a constant count, so that each vectorises */
    if (nf == 1)
        for (long j = 0; j < n; j++) x[j] = FN(renorm_mul)(x[j], thr, f, 1);
    else if (nf == 2)
        for (long j = 0; j < n; j++) x[j] = FN(renorm_mul)(x[j], thr, f, 2);
    else if (nf == 3)
        for (long j = 0; j < n; j++) x[j] = FN(renorm_mul)(x[j], thr, f, 3);
}

/* Each of B rows of x (n entries, row b at x + b * n) times 2^(sign * e[b]),
   sign = +1 or -1; rows whose e[b] is 0 are left alone.  Neighbouring rows
   with the same exponent (the usual case: the sequences of a batch drift
   alike) are one block of memory and are scaled as one, so that the factors
   are worked out once per run of rows rather than once per row.  The RNN's
   float32 sequence backward at T = 100, B = 32, I = 2, H = 64 (one Zen 4
   core, alternating runs against one exponent for the whole batch): 4-9%
   slower with a call per row, about 1% slower (0.592 against 0.586 ms,
   medians of four pairs) by runs of rows. */
static void FN(renorm_scale_rows)(long B, long n, real *x, const int *e, int sign)
{
    for (long b = 0, end; b < B; b = end) {
        for (end = b + 1; end < B && e[end] == e[b]; end++) {}
        if (e[b] != 0) FN(renorm_scale)((end - b) * n, x + b * n, sign * (long)e[b]);
    }
}

/* Keep each row b of dh (and dc unless NULL), B rows of H, carried at
   exponent e[b], in the safe range: when the row's largest |entry|
   f * 2^k (f in [0.5, 1)) has left it, multiply the row by 2^-k and add k
   to e[b].  Compiled per instruction set: it looks at every row at every
   step. */
TB_CLONES static void FN(renorm_carry)(long B, long H, real *dh, real *dc, int *e)
{
    for (long b = 0; b < B; b++) {
        real *h = dh + b * H, *c = dc ? dc + b * H : NULL;
        real m = FN(renorm_absmax)(H, h, c);
        int k = FN(renorm_safe)(m) ? 0 : FN(renorm_exponent)(m);
        if (k == 0) continue;
        FN(renorm_scale)(H, h, -k);
        if (c) FN(renorm_scale)(H, c, -k);
        e[b] += k;
    }
}

/* dh += d for one row: dh (and dc unless NULL) carried at exponent *e and d
   (n entries, true scale).  At e = 0 the plain sum.  Else both parts move to
   a common exponent first: 0 if the larger part's largest entry is in the
   safe range there (the plain path resumes), else that entry's own.
   Entries of the smaller part that fall below the smallest normal number on
   the way become 0: they lie below the resolution of the sum, whose largest
   entry is near 1. */
static void FN(renorm_add)(long n, real *dh, real *dc, const real *d, int *e)
{
    real md = *e != 0 ? FN(renorm_absmax)(n, d, NULL) : 0;
    if (*e != 0 && md == 0) return;  /* d is all zeros: nothing arrives */
    if (md != 0 && isfinite(md)) {
        real mh = FN(renorm_absmax)(n, dh, dc);
        int kd = FN(renorm_exponent)(md), kh = FN(renorm_exponent)(mh);
        int top = mh != 0 && isfinite(mh) && kh + *e > kd ? kh + *e : kd;
        int E = top > -TB_RENORM_EXP && top <= TB_RENORM_EXP ? 0 : top;
        FN(renorm_scale)(n, dh, *e - E);
        if (dc) FN(renorm_scale)(n, dc, *e - E);
        *e = E;
    }
    if (*e == 0) {
        FN(cell_add)(n, dh, d);
        return;
    }
    /* dh += d * 2^-e (d holding inf or NaN: added at the current exponent) */
    real f[3], thr;
    int nf = FN(renorm_factors)(-(long)*e, f, &thr);
    for (long j = 0; j < n; j++) dh[j] += FN(renorm_mul)(d[j], thr, f, nf);
}

/* ---- the carried gradient in a sequence backward, start to end

   A sequence backward walks the steps from T - 1 down to 0 carrying dh, the
   gradient on h_t (and dc, on c_t, for the LSTM), in dh0's (and dc0's) buffer
   as scaled values, row b times 2^e[b] (above).  carry_begin starts it,
   carry_receive adds what step t's output receives from the loss, carry_end
   hands it back.  The exponents live in scratch slot TB_SLOT_EXPS: the
   caller gives it back with tb_scratch_done when the walk is over. */

/* dh = d_hn and dc = d_cn (B rows of H; zeros where NULL; dc is NULL for a
   cell without a cell state), row b at the exponent carry_exp[b] (0 when
   carry_exp is NULL), brought into the safe range: returns the exponents e
   (B,) they are carried at, or NULL if memory for them could not be had. */
static int *FN(carry_begin)(long B, long H, const real *d_hn, const real *d_cn, const int *carry_exp,
                            real *dh, real *dc)
{
    int *e = (int *)tb_scratch(TB_SLOT_EXPS, (size_t)B * sizeof(int));
    if (!e) return NULL;
    for (long b = 0; b < B; b++) e[b] = carry_exp ? carry_exp[b] : 0;
    FN(cell_copy_or_zero)(B * H, d_hn, dh);
    if (dc) FN(cell_copy_or_zero)(B * H, d_cn, dc);
    FN(renorm_carry)(B, H, dh, dc, e);
    return e;
}

/* Step t: dh += d_out[t] (d_out (T, B, H) or NULL), then the trace's row t
   records dh and trace_exp[t] (T, B) the rows' exponents (each skipped if
   NULL). */
static void FN(carry_receive)(long t, long B, long H, const real *d_out, real *dh, real *dc,
                              real *trace_h, int *trace_exp, int *e)
{
    long BH = B * H;
    if (d_out)                                                  /* dh = total dL/dh_{t+1} */
        for (long b = 0; b < B; b++)
            FN(renorm_add)(H, dh + b * H, dc ? dc + b * H : NULL, d_out + t * BH + b * H, &e[b]);
    FN(cell_record)(BH, trace_h ? trace_h + t * BH : NULL, dh);
    if (trace_exp) memcpy(trace_exp + t * B, e, (size_t)B * sizeof(int));
}

/* After step 0: with carry_exp (B,), dh0 (and dc0 unless NULL) stay scaled
   and carry_exp = e; without, they are brought to true scale. */
static void FN(carry_end)(long B, long H, real *dh0, real *dc0, const int *e, int *carry_exp)
{
    if (carry_exp) {
        memcpy(carry_exp, e, (size_t)B * sizeof(int));         /* dh0, dc0 stay scaled */
    } else {
        FN(renorm_scale_rows)(B, H, dh0, e, 1);                 /* dh0, dc0 in true scale */
        if (dc0) FN(renorm_scale_rows)(B, H, dc0, e, 1);
    }
}

/* ---- the weight gradients

   After a backward pass over T steps (T = 1 for a single step): the weight
   gradients (and dx), each a sum or a map over all T*B rows, as few big GEMMs
   as possible.
     dgx = dL/d(W_ih x_t + b_ih),  dgh = dL/d(W_hh h_{t-1} + b_hh)  (T, B, GH)
   (one buffer for the RNN and the LSTM, two for the GRU)
   H_prev = [h0; out[0], ..., out[T-2]]: out is only read when T > 1.
     dW_ih = dgx^T @ X,   dW_hh = dgh^T @ H_prev        (sums over all T*B rows)
   as three products: dW_ih over all rows, dW_hh over step 0 (against h0) and
   over the rest (against out), each reading its operands in place.  (Gathering
   [X | H_prev] into one block for ONE product costs more than it saves:
   copying T*B*(I+H) values and adding the result back measured 0.5 ms of the
   RNN's 14.5 ms backward at T = 100, B = 32, I = H = 256, Zen 4.)

   Speed device, the transposed product (wgrad_transposed): over many rows the
   same sums are computed as
     [dW_ih | dW_hh]^T = [X | H_prev]^T @ [dgx | dgh]      (I+H, GH)
   into a scratch block, then added, transposed, into dw_ih and dw_hh.  Why:
   the GEMM's register tile is 32 columns wide and its row panels can be any
   height, so the gate dimension GH = G*H (a multiple of 32 for most H)
   belongs on the columns, not I+H (66 in the training loop: two full column
   panels and one of 2 columns); and dgates, the big operand, is read in place
   or packed by plain row copies instead of being transposed.  Measured on one
   Zen 4 core, T*B = 3200, I = 2, H = 64, the products alone: LSTM 78 -> 109
   GFLOP/s, GRU dW_hh 81-94 -> 101-111 and dW_ih 4-7 -> 30-49; the sequence
   backward (medians): LSTM 3.5 -> 3.1 ms, GRU 2.9 -> 2.2 ms, RNN 0.71 ->
   0.61 ms; T = 100, B = 64, I = 125, H = 320: LSTM 137 -> 130 ms.  The
   transposed add costs about a nanosecond per weight, which only many rows
   pay for: below WGRAD_T_MIN_ROWS (a single step, short sequences) the plain
   form runs (one LSTM step at B = 32, I = H = 256 took 0.65 ms plain and
   1.09 ms transposed).  Nor does it gain where I+H already fills whole column
   panels and is the wider side (an RNN with I+H a multiple of 32; T*B = 8000,
   I = H = 64: the product ran at 87-93 GFLOP/s plain, 69-75 transposed, as
   the GEMM reads [X | H_prev] in place for 64 rows of output, not for 128).

   dW_ih, dW_hh ACCUMULATE; dx (if not NULL) is WRITTEN; db_ih and db_hh, if not
   NULL, ACCUMULATE the column sums of dgx and dgh (the sequence kernels pass
   NULL: they sum step by step, while each step's gradients are in cache).
   Returns nonzero if scratch memory could not be had. */
#define WGRAD_T_MIN_ROWS 512

/* The plain form: dW_ih += dgx^T @ X, dW_hh += dgh^T @ H_prev */
static int FN(wgrad_plain)(long T, long B, long I, long H, long GH, const real *dgx,
                           const real *dgh, const real *x, const real *h0, const real *out,
                           real *dw_ih, real *dw_hh)
{
    long TB = T * B;
    return GEMM(1, 0, GH, I, TB, 1, dgx, GH, x, I, 1, dw_ih, I)
           || GEMM(1, 0, GH, H, B, 1, dgh, GH, h0, H, 1, dw_hh, H)
           || (T > 1 && GEMM(1, 0, GH, H, TB - B, 1, dgh + B * GH, GH, out, H, 1, dw_hh, H));
}

/* Step t's group when the weight gradients are taken S steps at a time (the
   LSTM's and GRU's "step by step"), counted from T - 1 down: steps lo..hi;
   returns lo and sets *hi.  With S = T, every step is in one group. */
static long FN(wgrad_group)(long t, long T, long S, long *hi)
{
    *hi = T - 1 - (T - 1 - t) / S * S;
    return *hi - S + 1 < 0 ? 0 : *hi - S + 1;
}

/* dst (B, na + nb + 1) = [a | b | 1] for a (B, na) and b (B, nb), b NULL when
   nb = 0: the rows of the LSTM's and GRU's weight-gradient products taken a
   group of steps at a time, whose column of ones gives the bias gradient */
static void FN(cell_rows_and_one)(long B, const real *a, long na, const real *b, long nb, real *dst)
{
    for (long r = 0; r < B; r++, dst += na + nb + 1) {
        memcpy(dst, a + r * na, (size_t)na * sizeof(real));
        if (nb) memcpy(dst + na, b + r * nb, (size_t)nb * sizeof(real));
        dst[na + nb] = 1;
    }
}

/* dst (GH, n) += src^T for src (n, GH): 16 rows of src at a time, each walked
   along GH, so that the reads stay sequential and each row of dst gets 16
   contiguous sums (a row of src walked down dst's columns would step by n) */
static void FN(wgrad_add_t)(long n, long GH, const real *src, real *dst)
{
    for (long k0 = 0; k0 < n; k0 += 16) {
        long k1 = k0 + 16 < n ? k0 + 16 : n;
        for (long g = 0; g < GH; g++)
            for (long k = k0; k < k1; k++) dst[g * n + k] += src[k * GH + g];
    }
}

/* The transposed form (see above): d = [X | H_prev]^T @ [dgx | dgh], then
   dW_ih += d[0:I]^T, dW_hh += d[I:I+H]^T */
static int FN(wgrad_transposed)(long T, long B, long I, long H, long GH, const real *dgx,
                                const real *dgh, const real *x, const real *h0, const real *out,
                                real *dw_ih, real *dw_hh)
{
    long TB = T * B, IH = I + H;
    real *d = (real *)tb_scratch(TB_SLOT_DW, (size_t)(IH * GH) * sizeof(real));
    int err = !d
              || GEMM(1, 0, I, GH, TB, 1, x, I, dgx, GH, 0, d, GH)
              || GEMM(1, 0, H, GH, B, 1, h0, H, dgh, GH, 0, d + I * GH, GH)
              || (T > 1 && GEMM(1, 0, H, GH, TB - B, 1, out, H, dgh + B * GH, GH, 1, d + I * GH, GH));
    if (!err) {
        FN(wgrad_add_t)(I, GH, d, dw_ih);
        FN(wgrad_add_t)(H, GH, d + I * GH, dw_hh);
    }
    tb_scratch_done(TB_SLOT_DW);
    return err;
}

static int FN(cell_weight_grads)(long T, long B, long I, long H, long GH,
                                 const real *dgx,  /* (T, B, GH) */
                                 const real *dgh,  /* (T, B, GH) */
                                 const real *x,    /* (T, B, I) */
                                 const real *h0,   /* (B, H) */
                                 const real *out,  /* (T, B, H), T > 1 only */
                                 const real *w_ih, /* (GH, I) */
                                 real *dx,         /* (T, B, I) or NULL */
                                 real *dw_ih,      /* (GH, I) */
                                 real *dw_hh,      /* (GH, H) */
                                 real *db_ih,      /* (GH,) or NULL */
                                 real *db_hh)      /* (GH,) or NULL */
{
    long TB = T * B;
    int err = 0;
    if (TB == 0) return 0;
    if (TB >= WGRAD_T_MIN_ROWS && (GH >= I + H || (I + H) % 32 != 0))
        err = FN(wgrad_transposed)(T, B, I, H, GH, dgx, dgh, x, h0, out, dw_ih, dw_hh);
    else
        err = FN(wgrad_plain)(T, B, I, H, GH, dgx, dgh, x, h0, out, dw_ih, dw_hh);
    if (!err && dx) err = GEMM(0, 0, TB, I, GH, 1, dgx, GH, w_ih, I, 0, dx, I);
    if (!err) {
        FN(cell_colsum_acc)(TB, GH, dgx, GH, db_ih);
        FN(cell_colsum_acc)(TB, GH, dgh, GH, db_hh);
    }
    return err;
}
