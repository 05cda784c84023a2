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

/* a (B, H): W_ih x + W_hh h on entry (no bias); h' = act(a + b_ih + b_hh) on exit. */
static void FN(rnn_pointwise_forward)(int relu, long B, long H,
                                      const real *b_ih, /* (H,) or NULL */
                                      const real *b_hh, /* (H,) or NULL */
                                      real *a)          /* (B, H) in place */
{
    for (long b = 0; b < B; b++) {
        real *ab = a + b * H;
        for (long j = 0; j < H; j++) {
            real v = ab[j] + FN(rc_bias2)(b_ih, b_hh, j);
            if (relu) ab[j] = v > 0 ? v : (v != v ? v : (real)0);  /* NaN stays NaN */
            else      ab[j] = FN(rc_tanh)(v);
        }
    }
}

/* da = dh * act'(a), with dh = dh_a + dh_b the total gradient on h'.
   trace_h, if not NULL, records dh. */
static void FN(rnn_pointwise_backward)(int relu, long B, long H,
                                       const real *h_new, /* (B, H) */
                                       const real *dh_a,  /* (B, H) */
                                       const real *dh_b,  /* (B, H) or NULL */
                                       real *da,          /* (B, H) */
                                       real *trace_h)     /* (B, H) or NULL */
{
    long n = B * H;
    for (long k = 0; k < n; k++) {
        real dh = dh_a[k] + (dh_b ? dh_b[k] : (real)0);
        if (trace_h) trace_h[k] = dh;
        real y = h_new[k];
        if (relu) da[k] = y > 0 ? dh : (real)0;
        else      da[k] = dh * ((real)1 - y * y);
    }
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
    FN(rnn_pointwise_forward)(relu, B, H, b_ih, b_hh, h_new);
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
    FN(rnn_pointwise_backward)(relu, B, H, h_new, d_h, NULL, da, NULL);
    GEMM(0, 0, B, H, H, 1, da, H, w_hh, H, 0, dh, H);              /* dh = da @ W_hh */
    FN(rc_backward_gemms)(1, B, I, H, H, da, da, x, h, NULL, w_ih,
                          dx, dw_ih, dw_hh, db_ih, db_hh);
    free(da);
    return 0;
}

/* ---- a whole sequence */

int FN(tb_rnn_seq_forward)(int relu, long T, long B, long I, long H,
                           const real *x,    /* (T, B, I) */
                           const real *h0,   /* (B, H) */
                           const real *w_ih, /* (H, I) */
                           const real *w_hh, /* (H, H) */
                           const real *b_ih, /* (H,) or NULL */
                           const real *b_hh, /* (H,) or NULL */
                           real *out)        /* (T, B, H) */
{
    long BH = B * H;
    real *whhT = (real *)rc_alloc((size_t)(H * H) * sizeof(real));  /* (H, H) = W_hh^T */
    if (!whhT) return 1;
    FN(rc_transpose)(H, H, w_hh, whhT);                    /* pack W_hh once per sequence */
    GEMM(0, 1, T * B, H, I, 1, x, I, w_ih, I, 0, out, H);  /* out[t] = x[t] @ W_ih^T, all t */
    for (long t = 0; t < T; t++) {
        const real *h_prev = t ? out + (t - 1) * BH : h0;
        real *a = out + t * BH;
        GEMM(0, 0, B, H, H, 1, h_prev, H, whhT, H, 1, a, H);  /* a += h_{t-1} @ W_hh^T */
        FN(rnn_pointwise_forward)(relu, B, H, b_ih, b_hh, a);
    }
    free(whhT);
    return 0;
}

int FN(tb_rnn_seq_backward)(int relu, long T, long B, long I, long H,
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
    real *da = (real *)rc_alloc((size_t)(T * BH) * sizeof(real));  /* (T, B, H) */
    if (!da) return 1;
    real *dh = dh0;  /* the running gradient on h_t lives in dh0's buffer */
    FN(rc_copy_or_zero)(BH, d_hn, dh);
    for (long t = T - 1; t >= 0; t--) {
        FN(rnn_pointwise_backward)(relu, B, H, out + t * BH, dh,
                                   d_out ? d_out + t * BH : NULL, da + t * BH,
                                   trace_h ? trace_h + t * BH : NULL);
        GEMM(0, 0, B, H, H, 1, da + t * BH, H, w_hh, H, 0, dh, H);  /* dh_{t-1} = da_t @ W_hh */
    }
    FN(rc_backward_gemms)(T, B, I, H, H, da, da, x, h0, out, w_ih,
                          dx, dw_ih, dw_hh, db_ih, db_hh);
    free(da);
    return 0;
}
