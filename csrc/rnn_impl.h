/* rnn_impl.h -- the Elman RNN written once over the type `real`.
 *
 * Included twice by rnn.c (real = float, SUF = f32; real = double, SUF = f64);
 * see recurrent_common.h for FN() and GEMM.  No include guard on purpose.
 *
 *   h' = act(W_ih x + b_ih + W_hh h + b_hh),   act = tanh, or relu if `relu`
 *
 * The activation's output is h' itself, so the RNN needs no workspace beyond
 * `out`: backward reads act'(a) from h' (1 - h'^2 for tanh, h' > 0 for relu).
 */

/* ---- the elementwise part of one step, shared by step and sequence kernels */

/* a (B, H): the full pre-activation on entry, h' = act(a) on exit. */
RC_CLONES static void FN(rnn_pointwise_forward)(int relu, long n, /* n = B*H */
                                      real *restrict a) /* (B, H) in place */
{
    if (relu)
        for (long k = 0; k < n; k++) a[k] = !(a[k] <= 0) ? a[k] : (real)0;  /* NaN stays NaN */
    else
        for (long k = 0; k < n; k++) a[k] = FN(rc_tanh)(a[k]);
}

/* da = dh * act'(a), read from the saved output h'. */
RC_CLONES static void FN(rnn_pointwise_backward)(int relu, long n,             /* n = B*H */
                                       const real *restrict h_new,   /* (B, H) */
                                       const real *restrict dh,      /* (B, H) total dL/dh' */
                                       real *restrict da)            /* (B, H) */
{
    if (relu)
        for (long k = 0; k < n; k++) da[k] = h_new[k] > 0 ? dh[k] : (real)0;
    else
        for (long k = 0; k < n; k++) da[k] = dh[k] * ((real)1 - h_new[k] * h_new[k]);
}

/* ---- one step */

void FN(tb_rnn_step_forward)(int relu, long B, long I, long H,
                             const real *x,    /* (B, I) */
                             const real *h,    /* (B, H) */
                             const real *w_ih, /* (H, I) */
                             const real *w_hh, /* (H, H) */
                             const real *b_ih, /* (H,) or NULL */
                             const real *b_hh, /* (H,) or NULL */
                             real *h_new)      /* (B, H) */
{
    GEMM(0, 1, B, H, I, 1, x, I, w_ih, I, 0, h_new, H);  /* a  = x @ W_ih^T */
    GEMM(0, 1, B, H, H, 1, h, H, w_hh, H, 1, h_new, H);  /* a += h @ W_hh^T */
    FN(rc_add_bias_rows)(B, H, h_new, b_ih, b_hh);       /* a += b_ih + b_hh */
    FN(rnn_pointwise_forward)(relu, B * H, h_new);
}

int FN(tb_rnn_step_backward)(int relu, long B, long I, long H,
                             const real *x,     /* (B, I) */
                             const real *h,     /* (B, H) */
                             const real *w_ih,  /* (H, I) */
                             const real *w_hh,  /* (H, H) */
                             const real *h_new, /* (B, H) */
                             const real *d_h,   /* (B, H) */
                             real *dx,          /* (B, I) or NULL */
                             real *dh,          /* (B, H) */
                             real *dw_ih,       /* (H, I) */
                             real *dw_hh,       /* (H, H) */
                             real *db_ih,       /* (H,) or NULL */
                             real *db_hh)       /* (H,) or NULL */
{
    real *da = (real *)rc_alloc((size_t)(B * H) * sizeof(real));  /* (B, H) */
    if (!da) return 1;
    FN(rnn_pointwise_backward)(relu, B * H, h_new, d_h, da);
    GEMM(0, 0, B, H, H, 1, da, H, w_hh, H, 0, dh, H);              /* dh = da @ W_hh */
    FN(rc_backward_gemms)(1, B, I, H, H, da, da, x, h, NULL, w_ih,
                          dx, dw_ih, dw_hh, db_ih, db_hh);
    free(da);
    return 0;
}

/* ---- a whole sequence
 *
 * Forward: the input half of every step is one GEMM over all T*B rows, written
 * straight into out; W_hh^T is packed once and each step adds
 * h_{t-1} @ W_hh^T + b_ih + b_hh in one register-tiled pass (rc_mm).
 * Backward keeps every step's da in one scratch block, sums the bias
 * gradient step by step and ends with one weight-gradient GEMM over all steps.
 */

RC_CLONES int FN(tb_rnn_seq_forward)(int relu, long T, long B, long I, long H,
                           const real *x,    /* (T, B, I) */
                           const real *h0,   /* (B, H) */
                           const real *w_ih, /* (H, I) */
                           const real *w_hh, /* (H, H) */
                           const real *b_ih, /* (H,) or NULL */
                           const real *b_hh, /* (H,) or NULL */
                           real *out)        /* (T, B, H) */
{
    long BH = B * H;
    real *bsum = (real *)rc_scratch(RC_SLOT_MISC, (size_t)H * sizeof(real));  /* b_ih + b_hh */
    FN(rc_panel) whhT;                                     /* W_hh^T (H, H), packed once */
    if (!bsum || FN(rc_pack)(&whhT, H, H, w_hh, H, 1)) return 1;
    const real *bias = FN(rc_bias_sum)(H, b_ih, b_hh, bsum);
    GEMM(0, 1, T * B, H, I, 1, x, I, w_ih, I, 0, out, H);  /* out[t] = x[t] @ W_ih^T, all steps */
    for (long t = 0; t < T; t++) {
        const real *h_prev = t ? out + (t - 1) * BH : h0;
        real *a = out + t * BH;
        FN(rc_mm)(B, h_prev, H, &whhT, a, H, 1, bias);       /* a += h_{t-1} @ W_hh^T + b */
        FN(rnn_pointwise_forward)(relu, BH, a);
    }
    FN(rc_panel_free)(&whhT);
    rc_scratch_done(RC_SLOT_MISC);
    return 0;
}

RC_CLONES int FN(tb_rnn_seq_backward)(int relu, long T, long B, long I, long H,
                            const real *x,     /* (T, B, I) */
                            const real *h0,    /* (B, H) */
                            const real *w_ih,  /* (H, I) */
                            const real *w_hh,  /* (H, H) */
                            const real *out,   /* (T, B, H) */
                            const real *d_out, /* (T, B, H) or NULL */
                            const real *d_hn,  /* (B, H) or NULL */
                            real *dx,          /* (T, B, I) or NULL */
                            real *dh0,         /* (B, H) */
                            real *dw_ih,       /* (H, I) */
                            real *dw_hh,       /* (H, H) */
                            real *db_ih,       /* (H,) or NULL */
                            real *db_hh,       /* (H,) or NULL */
                            real *trace_h)     /* (T, B, H) or NULL */
{
    long BH = B * H;
    /* one scratch block: da (T, B, H), the bias gradient's running sum (H,) */
    real *da = (real *)rc_scratch(RC_SLOT_DGATES, (size_t)(T * BH + H) * sizeof(real));
    if (!da) return 1;
    real *db = (db_ih || db_hh) ? da + T * BH : NULL;
    if (db) memset(db, 0, (size_t)H * sizeof(real));
    FN(rc_panel) whh;                                      /* W_hh (H, H), packed once */
    if (FN(rc_pack)(&whh, H, H, w_hh, H, 0)) return 1;
    real *dh = dh0;  /* the running gradient on h_t lives in dh0's buffer */
    FN(rc_copy_or_zero)(BH, d_hn, dh);
    for (long t = T - 1; t >= 0; t--) {
        real *da_t = da + t * BH;
        FN(rc_add)(BH, dh, d_out ? d_out + t * BH : NULL);  /* dh = total dL/dh_{t+1} */
        FN(rc_record)(BH, trace_h ? trace_h + t * BH : NULL, dh);
        FN(rnn_pointwise_backward)(relu, BH, out + t * BH, dh, da_t);
        FN(rc_colsum_acc)(B, H, da_t, H, db);
        FN(rc_mm)(B, da_t, H, &whh, dh, H, 0, NULL);        /* dh_{t-1} = da_t @ W_hh */
    }
    FN(rc_panel_free)(&whh);
    int rc = FN(rc_seq_weight_grads)(T, B, I, H, H, da, da, x, h0, out, w_ih, dx, dw_ih, dw_hh);
    if (db) FN(rc_add2)(H, db_ih, db_hh, db);
    rc_scratch_done(RC_SLOT_DGATES);
    return rc;
}
