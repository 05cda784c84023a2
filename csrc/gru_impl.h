/* gru_impl.h -- the GRU written once over the type `real`.
 *
 * Included twice by gru.c (float/f32, double/f64); see for_each_dtype.h.
 * No include guard on purpose.
 *
 *   r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
 *   z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
 *   n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
 *   h' = (1 - z) * n + z * h
 *
 * Because r multiplies only the h-side of the n gate, the x-side and h-side
 * pre-activations cannot be summed into one buffer as for the LSTM: each step
 * computes h @ W_hh^T into a scratch (B, 3H), and backward keeps two gradient
 * buffers, dgx = dL/d(W_ih x + b_ih) and dgh = dL/d(W_hh h + b_hh), which
 * differ only in the n columns (dgh_n = dgx_n * r).
 *
 * Workspace written by forward, read by backward:
 *   gates (.., B, 3H)  the ACTIVATED gates r, z, n
 *   hn    (.., B, H)   W_hn h + b_hn (needed for dL/dr)
 */

/* ---- the elementwise part of one step, shared by step and sequence kernels */

/* gates (B, 3H): W_ih x on entry (plus b_ih: added here if bx is not NULL),
   activated r, z, n on exit.  ah (B, 3H): W_hh h + b_hh; its n columns are
   saved as hn. */
TB_CLONES_FMA static void FN(gru_pointwise_forward)(long B, long H,
                                      const real *restrict h_prev, /* (B, H) */
                                      const real *restrict ah,     /* (B, 3H) */
                                      const real *restrict bx,     /* (3H,) b_ih, or NULL */
                                      real *restrict gates,        /* (B, 3H) in place */
                                      real *restrict hn,           /* (B, H) */
                                      real *restrict h_new)        /* (B, H) */
{
    for (long b = 0; b < B; b++) {
        real *xr = gates + b * 3 * H, *xz = xr + H, *xn = xz + H;
        const real *hr = ah + b * 3 * H, *hz = hr + H, *hh = hz + H;
        if (bx) {  /* the two loops differ only in the bias: the test stays outside */
            const real *br = bx, *bz = bx + H, *bn = bx + 2 * H;
            for (long j = 0; j < H; j++) {
                long k = b * H + j;
                real r = FN(vm_sigmoid)((xr[j] + br[j]) + hr[j]);
                real z = FN(vm_sigmoid)((xz[j] + bz[j]) + hz[j]);
                real n = FN(vm_tanh)((xn[j] + bn[j]) + r * hh[j]);
                xr[j] = r; xz[j] = z; xn[j] = n;
                hn[k] = hh[j];
                h_new[k] = ((real)1 - z) * n + z * h_prev[k];
            }
        } else {
            for (long j = 0; j < H; j++) {
                long k = b * H + j;
                real r = FN(vm_sigmoid)(xr[j] + hr[j]);
                real z = FN(vm_sigmoid)(xz[j] + hz[j]);
                real n = FN(vm_tanh)(xn[j] + r * hh[j]);
                xr[j] = r; xz[j] = z; xn[j] = n;
                hn[k] = hh[j];
                h_new[k] = ((real)1 - z) * n + z * h_prev[k];
            }
        }
    }
}

/* dh holds the total gradient on h' on entry and its direct part on h,
   dh * z, on exit (the caller adds dgh @ W_hh).  Writes dgx and dgh. */
TB_CLONES static void FN(gru_pointwise_backward)(long B, long H,
                                       const real *restrict gates,  /* (B, 3H) */
                                       const real *restrict hn,     /* (B, H) */
                                       const real *restrict h_prev, /* (B, H) */
                                       real *restrict dh,           /* (B, H) in/out */
                                       real *restrict dgx,          /* (B, 3H) */
                                       real *restrict dgh)          /* (B, 3H) */
{
    for (long b = 0; b < B; b++) {
        const real *gr = gates + b * 3 * H, *gz = gr + H, *gn = gz + H;
        real *xr = dgx + b * 3 * H, *xz = xr + H, *xn = xz + H;
        real *hr = dgh + b * 3 * H, *hz = hr + H, *hh = hz + H;
        for (long j = 0; j < H; j++) {
            long k = b * H + j;
            real r = gr[j], z = gz[j], n = gn[j], d = dh[k];
            real dan = d * ((real)1 - z) * ((real)1 - n * n);        /* dL/d(n pre-tanh) */
            real daz = d * (h_prev[k] - n) * z * ((real)1 - z);
            real dar = dan * hn[k] * r * ((real)1 - r);
            xr[j] = dar; xz[j] = daz; xn[j] = dan;
            hr[j] = dar; hz[j] = daz; hh[j] = dan * r;
            dh[k] = d * z;
        }
    }
}

/* ---- one step */

int FN(tb_gru_step_forward)(long B, long I, long H,
                            const real *x,    /* (B, I) */
                            const real *h,    /* (B, H) */
                            const real *w_ih, /* (3H, I) */
                            const real *w_hh, /* (3H, H) */
                            const real *b_ih, /* (3H,) or NULL */
                            const real *b_hh, /* (3H,) or NULL */
                            real *gates,      /* (B, 3H) */
                            real *hn,         /* (B, H) */
                            real *h_new)      /* (B, H) */
{
    long G3 = 3 * H;
    int err = 1;
    real *ah = (real *)tb_scratch(TB_SLOT_MISC, (size_t)(B * G3) * sizeof(real));  /* (B, 3H) */
    if (!ah
        || GEMM(0, 1, B, G3, I, 1, x, I, w_ih, I, 0, gates, G3)  /* x @ W_ih^T */
        || GEMM(0, 1, B, G3, H, 1, h, H, w_hh, H, 0, ah, G3))    /* h @ W_hh^T */
        goto done;
    FN(cell_add_bias_rows)(B, G3, gates, b_ih, NULL);             /* + b_ih */
    FN(cell_add_bias_rows)(B, G3, ah, b_hh, NULL);                /* + b_hh */
    FN(gru_pointwise_forward)(B, H, h, ah, NULL, gates, hn, h_new);
    err = 0;
done:
    tb_scratch_done(TB_SLOT_MISC);
    return err;
}

int FN(tb_gru_step_backward)(long B, long I, long H,
                             const real *x,     /* (B, I) */
                             const real *h,     /* (B, H) */
                             const real *w_ih,  /* (3H, I) */
                             const real *w_hh,  /* (3H, H) */
                             const real *gates, /* (B, 3H) */
                             const real *hn,    /* (B, H) */
                             const real *d_h,   /* (B, H) */
                             real *dx,          /* (B, I) or NULL */
                             real *dh,          /* (B, H) */
                             real *dw_ih,       /* (3H, I) */
                             real *dw_hh,       /* (3H, H) */
                             real *db_ih,       /* (3H,) or NULL */
                             real *db_hh)       /* (3H,) or NULL */
{
    long G3 = 3 * H;
    int err = 1;
    real *dgx = (real *)tb_scratch(TB_SLOT_DGATES, (size_t)(2 * B * G3) * sizeof(real));  /* 2 x (B, 3H) */
    if (!dgx) goto done;
    real *dgh = dgx + B * G3;
    memcpy(dh, d_h, (size_t)(B * H) * sizeof(real));
    FN(gru_pointwise_backward)(B, H, gates, hn, h, dh, dgx, dgh);
    if (GEMM(0, 0, B, H, G3, 1, dgh, G3, w_hh, H, 1, dh, H)  /* dh = dh*z + dgh @ W_hh */
        || FN(cell_weight_grads)(1, B, I, H, G3, dgx, dgh, x, h, NULL, w_ih, dx, dw_ih, dw_hh, db_ih, db_hh))
        goto done;
    err = 0;
done:
    tb_scratch_done(TB_SLOT_DGATES);
    return err;
}

/* ---- a whole sequence
 *
 * Forward: the input half of every step is one GEMM over all T*B rows
 * (gates = x @ W_ih^T; b_ih is added in the gate loop); W_hh^T is packed
 * once and each step computes ah = h_{t-1} @ W_hh^T + b_hh in one
 * register-tiled pass (panel_mm).  Backward keeps dgx and dgh for every step in
 * one scratch block, sums the bias gradients step by step, and ends with the
 * weight-gradient GEMMs over all steps (or, for a layer whose weight gradients
 * fit the cache, sums those too a few steps at a time: see "the weight
 * gradients step by step" below).
 */

TB_CLONES int FN(tb_gru_seq_forward)(long T, long B, long I, long H,
                           const real *x,    /* (T, B, I) */
                           const real *h0,   /* (B, H) */
                           const real *w_ih, /* (3H, I) */
                           const real *w_hh, /* (3H, H) */
                           const real *b_ih, /* (3H,) or NULL */
                           const real *b_hh, /* (3H,) or NULL */
                           real *gates,      /* (T, B, 3H) */
                           real *hn,         /* (T, B, H) */
                           real *out)        /* (T, B, H) */
{
    long G3 = 3 * H, BH = B * H;
    int err = 1;
    panel whhT = PANEL_NONE;                                  /* W_hh^T (H, 3H), packed once */
    real *ah = (real *)tb_scratch(TB_SLOT_MISC, (size_t)(B * G3) * sizeof(real));  /* h-side (B, 3H) */
    if (!ah || FN(panel_pack)(&whhT, H, G3, w_hh, H, 1)
        || GEMM(0, 1, T * B, G3, I, 1, x, I, w_ih, I, 0, gates, G3))  /* x[t] @ W_ih^T, all steps */
        goto done;
    for (long t = 0; t < T; t++) {
        const real *h_prev = t ? out + (t - 1) * BH : h0;
        FN(panel_mm)(B, h_prev, H, &whhT, ah, G3, 0, b_hh);       /* ah = h_{t-1} @ W_hh^T + b_hh */
        FN(gru_pointwise_forward)(B, H, h_prev, ah, b_ih, gates + t * B * G3, hn + t * BH, out + t * BH);
    }
    err = 0;
done:
    panel_free(&whhT);
    tb_scratch_done(TB_SLOT_MISC);
    return err;
}

/* Speed device, the weight gradients step by step: the LSTM's (see "the weight
   gradients step by step" in lstm_impl.h), a group of steps (GRU_WGRAD_ROWS
   rows) per product while their gate gradients are in cache, with two products,
   as the input and hidden sides have gradients of their own:
     [dW_ih | db_ih]^T (I+1, 3H) += [x_t | 1]^T @ dgx_t
     [dW_hh | db_hh]^T (H+1, 3H) += [h_{t-1} | 1]^T @ dgh_t
   Measured on one Zen 4 core, float32, sequence backward, plain -> step by step
   (ms, medians of 40-100; T = 100 unless given): B = 32, I = 2, H = 64 (the
   training loop's): 2.63 -> 2.15;  B = 16, I = H = 64: 2.04 -> 1.78;
   T = 1000, B = 8, I = H = 64: 12.2 -> 9.9;  B = 64, I = 125, H = 128:
   29.6 -> 26.1;  B = 4, I = H = 32: 0.124 -> 0.121;  T = 50, B = 1: 0.022 both. */
#define GRU_WGRAD_ROWS 128
#define GRU_STEP_WGRAD_MAX_BYTES (640 * 1024)
#define GRU_STEP_WGRAD(T, B, I, H) \
    ((T) * (B) > GRU_WGRAD_ROWS && \
     (double)((I) + (H) + 2) * 3 * (H) * sizeof(real) <= GRU_STEP_WGRAD_MAX_BYTES)

/* Step t's share: its rows [x_t | 1] and [h_{t-1} | 1] go to xr and hr at row
   B*slot, beside its dgx and dgh; at slot 0 (the group's earliest step) the
   group is complete, and dwxT += xr^T @ dgx, dwhT += hr^T @ dgh over its
   `rows`, and its dx[lo..] = dgx @ W_ih when dx_lo is not NULL.  Nonzero if
   the GEMM's scratch memory could not be had. */
static int FN(gru_step_wgrad)(long B, long I, long H, long slot, long rows,
                              const real *x_t,    /* (B, I) */
                              const real *h_prev, /* (B, H) */
                              const real *w_ih,   /* (3H, I) */
                              const real *dgx,    /* (rows, 3H), true scale */
                              const real *dgh,    /* (rows, 3H), true scale */
                              real *xr,           /* (rows, I+1) */
                              real *hr,           /* (rows, H+1) */
                              real *dwxT,         /* (I+1, 3H) accumulated */
                              real *dwhT,         /* (H+1, 3H) accumulated */
                              real *dx_lo)        /* (rows, I) or NULL */
{
    long G3 = 3 * H;
    FN(cell_rows_and_one)(B, x_t, I, NULL, 0, xr + slot * B * (I + 1));
    FN(cell_rows_and_one)(B, h_prev, H, NULL, 0, hr + slot * B * (H + 1));
    return slot == 0 && (GEMM(1, 0, I + 1, G3, rows, 1, xr, I + 1, dgx, G3, 1, dwxT, G3)
                         || GEMM(1, 0, H + 1, G3, rows, 1, hr, H + 1, dgh, G3, 1, dwhT, G3)
                         || (dx_lo && GEMM(0, 0, rows, I, G3, 1, dgx, G3, w_ih, I, 0, dx_lo, I)));
}

/* ---- the sequence backward, in parts */

/* The backward's one scratch block (TB_SLOT_DGATES), as gru_back_scratch
   lays it out. */
typedef struct {
    int per_step;      /* the weight gradients step by step (GRU_STEP_WGRAD) */
    long S;            /* steps per weight-gradient product: T, or fewer step by step */
    real *dgx, *dgh;   /* (S, B, 3H) each */
    real *dbx, *dbh;   /* (3H,) each: the running bias sums; NULL without that bias or step by step */
    real *xr, *hr;     /* step by step: the rows [x_t | 1] (S, B, I+1) and [h_{t-1} | 1] (S, B, H+1) */
    real *dwxT, *dwhT; /* step by step: the sums [dW_ih | db_ih]^T (I+1, 3H) and [dW_hh | db_hh]^T (H+1, 3H) */
} FN(gru_back_buffers);

/* Takes the scratch block for a backward over T steps, lays it out in s and
   zeroes its running sums; nonzero if it could not be had. */
static int FN(gru_back_scratch)(long T, long B, long I, long H, int want_dbx, int want_dbh,
                                FN(gru_back_buffers) *s)
{
    long G3 = 3 * H;
    s->per_step = GRU_STEP_WGRAD(T, B, I, H);
    s->S = s->per_step ? (GRU_WGRAD_ROWS + B - 1) / B : T;
    /* one scratch block: dgx, dgh (T, B, 3H) each, or (S, B, 3H) each step by step; then either the
       running bias sums (3H,) each, or the rows [x_t | 1] (S, B, I+1) and [h_{t-1} | 1] (S, B, H+1) and
       the sums [dW_ih | db_ih]^T (I+1, 3H) and [dW_hh | db_hh]^T (H+1, 3H) */
    long ng = s->S * B * G3, nr = s->S * B * (I + H + 2), ns = (I + H + 2) * G3;
    s->dgx = (real *)tb_scratch(TB_SLOT_DGATES, (size_t)(2 * ng + (s->per_step ? nr + ns : 2 * G3)) * sizeof(real));
    if (!s->dgx) return 1;
    s->dgh = s->dgx + ng;
    s->dbx = want_dbx && !s->per_step ? s->dgh + ng : NULL;
    s->dbh = want_dbh && !s->per_step ? s->dgh + ng + G3 : NULL;
    s->xr = s->dgh + ng;
    s->hr = s->xr + s->S * B * (I + 1);
    s->dwxT = s->xr + nr;
    s->dwhT = s->dwxT + (I + 1) * G3;
    if (s->dbx) memset(s->dbx, 0, (size_t)G3 * sizeof(real));
    if (s->dbh) memset(s->dbh, 0, (size_t)G3 * sizeof(real));
    if (s->per_step) memset(s->dwxT, 0, (size_t)ns * sizeof(real));
    return 0;
}

/* One step of the reverse walk after dh, the total gradient on h_t, has
   arrived, row b carried at exponent e[b].  Writes the step's gate gradients dgx_t and
   dgh_t (B, 3H); leaves in dh the gradient on h_{t-1}; brings dgx_t and dgh_t
   to true scale and adds their column sums to dbx and dbh (each unless NULL).
   Compiled per instruction set for those column sums. */
TB_CLONES static void FN(gru_back_step)(long B, long H, const int *e, const panel *whh,
                                        const real *gates_t, /* (B, 3H) */
                                        const real *hn_t,    /* (B, H) */
                                        const real *h_prev,  /* (B, H) */
                                        real *dh,            /* (B, H) in/out */
                                        real *dgx_t,         /* (B, 3H) */
                                        real *dgh_t,         /* (B, 3H) */
                                        real *dbx,           /* (3H,) or NULL */
                                        real *dbh)           /* (3H,) or NULL */
{
    long G3 = 3 * H;
    FN(gru_pointwise_backward)(B, H, gates_t, hn_t, h_prev, dh, dgx_t, dgh_t);
    FN(panel_mm)(B, dgh_t, G3, whh, dh, H, 1, NULL);          /* dh_{t-1} += dgh_t @ W_hh */
    FN(renorm_scale_rows)(B, G3, dgx_t, e, 1);                 /* dgx_t, dgh_t in true scale */
    FN(renorm_scale_rows)(B, G3, dgh_t, e, 1);
    FN(cell_colsum_acc)(B, G3, dgx_t, G3, dbx);
    FN(cell_colsum_acc)(B, G3, dgh_t, G3, dbh);
}

/* After the walk: dW_ih, dW_hh, db_ih and db_hh (NULL skipped) += their sums,
   from the step-by-step sums or, otherwise, as products over all T steps' dgx
   and dgh (which also write dx unless NULL) and the running bias sums.
   Nonzero if the GEMM's scratch memory could not be had.  Compiled per
   instruction set for its adds. */
TB_CLONES static int FN(gru_back_weight_grads)(long T, long B, long I, long H,
                                               const FN(gru_back_buffers) *s,
                                               const real *x,    /* (T, B, I) */
                                               const real *h0,   /* (B, H) */
                                               const real *out,  /* (T, B, H) */
                                               const real *w_ih, /* (3H, I) */
                                               real *dx,         /* (T, B, I) or NULL */
                                               real *dw_ih,      /* (3H, I) */
                                               real *dw_hh,      /* (3H, H) */
                                               real *db_ih,      /* (3H,) or NULL */
                                               real *db_hh)      /* (3H,) or NULL */
{
    long G3 = 3 * H;
    if (s->per_step) {
        FN(wgrad_add_t)(I, G3, s->dwxT, dw_ih);                /* dW_ih += its rows, transposed */
        FN(wgrad_add_t)(H, G3, s->dwhT, dw_hh);
        FN(cell_add2)(G3, db_ih, NULL, s->dwxT + I * G3);
        FN(cell_add2)(G3, db_hh, NULL, s->dwhT + H * G3);
    } else if (FN(cell_weight_grads)(T, B, I, H, G3, s->dgx, s->dgh, x, h0, out, w_ih, dx, dw_ih, dw_hh,
                                     NULL, NULL)) {
        return 1;
    }
    if (s->dbx) FN(cell_add2)(G3, db_ih, NULL, s->dbx);
    if (s->dbh) FN(cell_add2)(G3, db_hh, NULL, s->dbh);
    return 0;
}

TB_CLONES int FN(tb_gru_seq_backward)(long T, long B, long I, long H,
                            const real *x,     /* (T, B, I) */
                            const real *h0,    /* (B, H) */
                            const real *w_ih,  /* (3H, I) */
                            const real *w_hh,  /* (3H, H) */
                            const real *gates, /* (T, B, 3H) */
                            const real *hn,    /* (T, B, H) */
                            const real *out,   /* (T, B, H) */
                            const real *d_out, /* (T, B, H) or NULL */
                            const real *d_hn,  /* (B, H) or NULL */
                            real *dx,          /* (T, B, I) or NULL */
                            real *dh0,         /* (B, H) */
                            real *dw_ih,       /* (3H, I) */
                            real *dw_hh,       /* (3H, H) */
                            real *db_ih,       /* (3H,) or NULL */
                            real *db_hh,       /* (3H,) or NULL */
                            real *trace_h,     /* (T, B, H) or NULL */
                            int *trace_exp,    /* (T, B) or NULL */
                            int *carry_exp)    /* (B,) in/out, or NULL */
{
    long G3 = 3 * H, BH = B * H;
    int err = 1;
    panel whh = PANEL_NONE;                                   /* W_hh (3H, H), packed once */
    FN(gru_back_buffers) s;
    if (FN(gru_back_scratch)(T, B, I, H, db_ih != NULL, db_hh != NULL, &s)
        || FN(panel_pack)(&whh, G3, H, w_hh, H, 0))
        goto done;
    /* the running gradient on h_t lives in dh0's buffer, row b as dh * 2^e[b]
       (see "tiny gradients" in recurrent_impl.h) */
    real *dh = dh0;
    int *e = FN(carry_begin)(B, H, d_hn, NULL, carry_exp, dh, NULL);
    if (!e) goto done;
    for (long t = T - 1; t >= 0; t--) {
        const real *h_prev = t ? out + (t - 1) * BH : h0;
        /* t's group of S steps, counted from T - 1 down, is lo..hi (all steps at once when not step by step) */
        long hi, lo = FN(wgrad_group)(t, T, s.S, &hi);
        real *dgx_t = s.dgx + (t - lo) * B * G3, *dgh_t = s.dgh + (t - lo) * B * G3;
        FN(carry_receive)(t, B, H, d_out, dh, NULL, trace_h, trace_exp, e);  /* dh = total dL/dh_{t+1} */
        FN(gru_back_step)(B, H, e, &whh, gates + t * B * G3, hn + t * BH, h_prev, dh, dgx_t, dgh_t, s.dbx, s.dbh);
        if (s.per_step && FN(gru_step_wgrad)(B, I, H, t - lo, (hi - lo + 1) * B, x + t * B * I, h_prev, w_ih,
                                             s.dgx, s.dgh, s.xr, s.hr, s.dwxT, s.dwhT, dx ? dx + lo * B * I : NULL))
            goto done;
        FN(renorm_carry)(B, H, dh, NULL, e);
    }
    if (FN(gru_back_weight_grads)(T, B, I, H, &s, x, h0, out, w_ih, dx, dw_ih, dw_hh, db_ih, db_hh))
        goto done;
    FN(carry_end)(B, H, dh0, NULL, e, carry_exp);
    err = 0;
done:
    panel_free(&whh);
    tb_scratch_done(TB_SLOT_EXPS);
    tb_scratch_done(TB_SLOT_DGATES);
    return err;
}
