/* rnn_impl.h -- the Elman RNN written once over the type `real`.
 *
 * Included twice by rnn.c (float/f32, double/f64); see for_each_dtype.h for
 * FN() and recurrent_common.h for GEMM and the shared helpers.  No include
 * guard on purpose.
 *
 *   h' = act(W_ih x + b_ih + W_hh h + b_hh),   act = tanh, or relu if `relu`
 *
 * The activation's output is h' itself, so the RNN needs no workspace beyond
 * `out`: backward reads act'(a) from h' (1 - h'^2 for tanh; for relu 0 where
 * h' <= 0, else 1 -- also at h' = NaN, so a NaN gradient is not hidden).
 */

/* ---- the elementwise part of one step, shared by step and sequence kernels */

/* a (B, H): the full pre-activation on entry, h' = act(a) on exit.  next_x
   (B, I) and next_a (B, H): rows fetched meanwhile, row by row, or NULL (see
   "the next step's rows" below; a hint only, no result depends on it). */
TB_CLONES_FMA static void FN(rnn_pointwise_forward)(int relu, long B, long H, long I,
                                      real *restrict a,     /* (B, H) in place */
                                      const real *next_x,   /* (B, I) or NULL */
                                      const real *next_a)   /* (B, H) or NULL */
{
    const long line = 64 / (long)sizeof(real);  /* reals per cache line */
    for (long b = 0; b < B; b++) {
        for (long k = 0; next_x && k < I; k += line) TB_PREFETCH(next_x + b * I + k);
        for (long k = 0; next_a && k < H; k += line) TB_PREFETCH(next_a + b * H + k);
        real *ab = a + b * H;
        if (relu)
            for (long k = 0; k < H; k++) ab[k] = !(ab[k] <= 0) ? ab[k] : (real)0;  /* NaN stays NaN */
        else
            for (long k = 0; k < H; k++) ab[k] = FN(vm_tanh)(ab[k]);
    }
}

/* da = dh * act'(a), read from the saved output h'. */
TB_CLONES static void FN(rnn_pointwise_backward)(int relu, long n,             /* n = B*H */
                                       const real *restrict h_new,   /* (B, H) */
                                       const real *restrict dh,      /* (B, H) total dL/dh' */
                                       real *restrict da)            /* (B, H) */
{
    if (relu)
        for (long k = 0; k < n; k++) da[k] = h_new[k] <= 0 ? (real)0 : dh[k];  /* NaN passes dh */
    else
        for (long k = 0; k < n; k++) da[k] = dh[k] * ((real)1 - h_new[k] * h_new[k]);
}

/* ---- one step */

int FN(tb_rnn_step_forward)(int relu, long B, long I, long H,
                            const real *x,    /* (B, I) */
                            const real *h,    /* (B, H) */
                            const real *w_ih, /* (H, I) */
                            const real *w_hh, /* (H, H) */
                            const real *b_ih, /* (H,) or NULL */
                            const real *b_hh, /* (H,) or NULL */
                            real *h_new)      /* (B, H) */
{
    if (GEMM(0, 1, B, H, I, 1, x, I, w_ih, I, 0, h_new, H)      /* a  = x @ W_ih^T */
        || GEMM(0, 1, B, H, H, 1, h, H, w_hh, H, 1, h_new, H))  /* a += h @ W_hh^T */
        return 1;
    FN(cell_add_bias_rows)(B, H, h_new, b_ih, b_hh);           /* a += b_ih + b_hh */
    FN(rnn_pointwise_forward)(relu, B, H, I, h_new, NULL, NULL);
    return 0;
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
    int err = 1;
    real *da = (real *)tb_scratch(TB_SLOT_DGATES, (size_t)(B * H) * sizeof(real));  /* (B, H) */
    if (!da) goto done;
    FN(rnn_pointwise_backward)(relu, B * H, h_new, d_h, da);
    if (GEMM(0, 0, B, H, H, 1, da, H, w_hh, H, 0, dh, H)              /* dh = da @ W_hh */
        || FN(cell_weight_grads)(1, B, I, H, H, da, da, x, h, NULL, w_ih, dx, dw_ih, dw_hh, db_ih, db_hh))
        goto done;
    err = 0;
done:
    tb_scratch_done(TB_SLOT_DGATES);
    return err;
}

/* ---- a whole sequence
 *
 * Forward: W_ih^T and W_hh^T are packed once, and the steps run in blocks:
 * the input half of a block's pre-activations, x_t @ W_ih^T + b_ih + b_hh,
 * is one register-tiled product (panel_mm) over all the block's rows, then
 * each step adds h_{t-1} @ W_hh^T and applies the activation.  A block holds
 * as many steps as fit in RNN_BLOCK_BYTES of out (at least one), so that a
 * step finds its rows of the input half still in L1.  (The input half as one
 * GEMM over all T*B rows leaves out to be fetched again from memory at every
 * step: 8.6 against 8.3 ms at T = 100, B = 32, I = H = 256 on one Zen 4 core,
 * where a block is one step.  For a small batch, blocks of many steps are
 * what pays: one product over their rows keeps 8-row tiles busy where a
 * one-row product per step would wait on its dispatch and FMA latency; the
 * kernel at T = 50, B = 1, I = H = 32 took 5.5 us against 7.2 us with a
 * product per step.)
 *
 * Speed device, the next step's rows (the next_x, next_a arguments of
 * rnn_pointwise_forward): at the last step of a block, the activation loop
 * asks for the rows the next block's input projection starts with -- x_t1
 * (B, I), read, and out_t1 (B, H), which that product writes first, so that
 * each of its lines would otherwise be fetched from memory while the tiles
 * wait -- one row of each per row of its own work, so that they arrive while
 * the loop is busy with tanh.  The plain loop walks a (B, H) in one pass and
 * fetches nothing.  Where the 0.8 ms above the forward's product floor went,
 * at T = 100, B = 32, I = H = 256, float32, on one Zen 4 core (medians of
 * three interleaved rounds of a build switched at run time to leave one part
 * out; the products alone 200 x 37.7 us = 7.5 ms): the forward 8.40 ms; with x_t read from
 * one fixed place 8.12, with out_t written to one fixed place 8.04, with both
 * 7.83, and without tanh as well 7.54.  So about 0.6 ms is the product
 * waiting on x and out rows from memory and 0.25 ms is tanh.  This device
 * takes back most of the first part: the forward 8.44 -> 7.99 ms (medians of
 * four alternating runs of the two builds, -5%), at T = 100, B = 64,
 * I = 125, H = 320 18.07 -> 17.09 ms (-5%); at T = 1000, B = 8, I = H = 64
 * and T = 100, B = 16, I = H = 64 (blocks of many steps) no change beyond
 * the noise.  Kept to next rows of at most RNN_NEXT_ROWS_MAX_BYTES: at
 * B = 64, I = H = 512 (256 KB of them, with 2 MB of panels that do not fit
 * in L2 either) the fetched rows evict what the tiles read, 62.7 -> 64.2 ms
 * (62.2 -> 62.0 with the limit).
 * A hint only: the results are bit for bit those of the plain loop.
 * (Fetching the whole of x_t1 and out_t1 at once before the activation loop,
 * or two steps ahead, measured no better.)
 *
 * Backward sums the bias gradient step by step and ends with the
 * weight-gradient products over all steps, every step's da kept in one
 * scratch block until then.
 *
 * Where the time goes at the training loop's shape (T = 100, B = 32, I = 2,
 * H = 64, float32, the backward with the per-step trace and without dx; one
 * Zen 4 core, a build switched at run time to leave one part out, medians
 * of three or four interleaved runs; results wrong, times only).  Forward
 * 0.355 ms (blocked loop): the per-step products about 0.24 (2.41 us each,
 * 109 GFLOP/s, the micro-kernel's rate alone), tanh 0.04-0.06, the input
 * products 0.02-0.03, a call's fixed cost about 0.011 (at T = 1).  Backward
 * 0.580 ms: without the per-step products 0.35, without the weight-gradient
 * products 0.35 (27 MFLOP at about 108 GFLOP/s), without both 0.081, of
 * which about 0.014 is a call's fixed cost; without the da loop 0.557, the
 * trace copy 0.576, the renormalisation 0.584, all four small loops (with
 * the bias sums) 0.530.  So the backward is within about 0.07 ms of its
 * products, and no one of its loops holds 5% of it.  Tried there and not
 * kept: the weight gradients a few steps at a time (rnn_wgrad_block) at
 * this shape, blocks of 16 steps 0.581 against 0.583 ms for the one pass
 * at the end; of 8, 4, 2 steps (fewer rows than the transposed form
 * takes) 0.648, 0.660, 0.676.  Nor the input half folded into each step's
 * product, as the LSTM forward does ([h_{t-1} | x_t] @ [W_hh | W_ih]^T with
 * the bias as the product's start, the activation loop writing h_t into
 * the rows the next step reads, for I <= 32 and B >= 8): the forward 4.3
 * to 5.4% faster in three runs of alternating builds, the whole training
 * step 2% (within its noise), 11% slower at B = 1 (T = 50, I = H = 32) --
 * too little for a second forward loop beside this one.
 *
 * Speed device, the weight gradients a few steps at a time
 * (rnn_wgrad_chunk, rnn_wgrad_block): when the sequence's x and out rows
 * are far larger than the L2 and the weights are small, the products
 * dW_ih += da^T X, dW_hh += da^T H_prev (and dx = da W_ih) run after every
 * block of RNN_WGRAD_ROWS rows (whole steps), while the block's da and out
 * rows are still in cache, and da lives in a ring of one block.  The plain
 * products over all rows at the end fetch da, x and out from memory again
 * as they pack them: at T = 100, B = 32, I = H = 256 on one Zen 4 core the
 * packing alone took 1.8 ms of a 14.4 ms backward.  Measured there (one
 * core, medians of alternating runs of the two builds): the weight-gradient
 * products 9.8 -> 8.4 ms; the backward 14.2 -> 13.2 ms, with the per-step
 * trace 15.1 -> 13.7 ms; at T = 1000, B = 8, I = H = 64, 3.15 -> 3.06 ms.
 * Kept to that range: with weights beyond half an L2 every block re-reads
 * the weight gradients from further out (I = H = 512, B = 64: 108 -> 115
 * ms), and T = 100, B = 64, I = 125, H = 320 (weights of 570 KB) gained 2%,
 * within the noise.  (The block's products run at about 105 GFLOP/s against
 * the micro-kernel's 120.  Not from x's rows arriving cold: fetching each
 * step's x rows, and the next step's d_out rows, from the backward's
 * activation loop as the forward does, medians of four interleaved runs:
 * 13.24 ms without, 13.25 with x's rows, 13.58 with both; nor from the
 * micro-kernel's fetch ahead of B: without it 14.28 against 14.14 ms.)
 */

#ifndef RNN_BLOCK_BYTES
#define RNN_BLOCK_BYTES (16 * 1024)  /* a block of steps: at most this much of out (half an L1) */
#endif
#ifndef RNN_NEXT_ROWS_MAX_BYTES
#define RNN_NEXT_ROWS_MAX_BYTES (128.0 * 1024)  /* the next step's rows: fetched up to this */
#endif

TB_CLONES int FN(tb_rnn_seq_forward)(int relu, long T, long B, long I, long H,
                           const real *x,    /* (T, B, I) */
                           const real *h0,   /* (B, H) */
                           const real *w_ih, /* (H, I) */
                           const real *w_hh, /* (H, H) */
                           const real *b_ih, /* (H,) or NULL */
                           const real *b_hh, /* (H,) or NULL */
                           real *out)        /* (T, B, H) */
{
    long BH = B * H;
    int err = 1;
    panel whhT = PANEL_NONE, wihT = PANEL_NONE;               /* W_hh^T (H, H), W_ih^T (I, H) */
    /* one scratch block: b_ih + b_hh (H, padded to whole cache lines), packed W_ih^T */
    long hpad = (H + 15) / 16 * 16;
    real *bsum = (real *)tb_scratch(TB_SLOT_MISC, (size_t)(hpad + FN(panel_elems)(I, H)) * sizeof(real));
    if (!bsum || FN(panel_pack)(&whhT, H, H, w_hh, H, 1)) goto done;
    FN(panel_pack_into)(&wihT, I, H, w_ih, I, 1, bsum + hpad);
    const real *bias = FN(cell_bias_sum)(H, b_ih, b_hh, bsum);
    long block = RNN_BLOCK_BYTES / ((long)sizeof(real) * (BH > 0 ? BH : 1));  /* steps per block */
    if (block < 1) block = 1;
    int ahead = (double)B * (I + H) * sizeof(real) <= RNN_NEXT_ROWS_MAX_BYTES;
    for (long t0 = 0; t0 < T; t0 += block) {
        long t1 = t0 + block < T ? t0 + block : T;
        /* a_t = x_t @ W_ih^T + b for the block's steps t0 <= t < t1 */
        FN(panel_mm)((t1 - t0) * B, x + t0 * B * I, I, &wihT, out + t0 * BH, H, 0, bias);
        for (long t = t0; t < t1; t++) {
            const real *h_prev = t ? out + (t - 1) * BH : h0;
            real *a = out + t * BH;
            FN(panel_mm)(B, h_prev, H, &whhT, a, H, 1, NULL);     /* a += h_{t-1} @ W_hh^T */
            int last = ahead && t + 1 == t1 && t1 < T;           /* the next block's rows, ahead */
            FN(rnn_pointwise_forward)(relu, B, H, I, a, last ? x + t1 * B * I : NULL,
                                      last ? out + t1 * BH : NULL);
        }
    }
    err = 0;
done:
    panel_free(&whhT);
    tb_scratch_done(TB_SLOT_MISC);
    return err;
}

#ifndef RNN_WGRAD_ROWS
#define RNN_WGRAD_ROWS 128                             /* rows of a block (at least one step) */
#define RNN_WGRAD_CHUNK_MIN_BYTES (4.0 * 1024 * 1024)  /* x and out rows: more than this */
#define RNN_WGRAD_CHUNK_MAX_W_BYTES (512.0 * 1024)     /* [W_ih | W_hh]: at most this */
#endif

/* Steps per weight-gradient block, or 0 for one set of products after the
   whole pass (see "the weight gradients a few steps at a time" above). */
static long FN(rnn_wgrad_chunk)(long T, long B, long I, long H)
{
    double rows = (double)T * B * (I + H) * sizeof(real), w = (double)H * (I + H) * sizeof(real);
    if (B <= 0 || rows <= RNN_WGRAD_CHUNK_MIN_BYTES || w > RNN_WGRAD_CHUNK_MAX_W_BYTES) return 0;
    return RNN_WGRAD_ROWS / B > 1 ? RNN_WGRAD_ROWS / B : 1;
}

/* The weight gradients (and dx) of steps [t, t + n), whose da is in `ring`
   (n, B, H): H_prev is [h0; out[0..n-2]] from step 0, else n*B contiguous
   rows of out from step t - 1. */
static int FN(rnn_wgrad_block)(long t, long n, long B, long I, long H, const real *ring,
                               const real *x, const real *h0, const real *out,
                               const real *w_ih, real *dx, real *dw_ih, real *dw_hh)
{
    real *dxt = dx ? dx + t * B * I : NULL;
    if (t == 0)
        return FN(cell_weight_grads)(n, B, I, H, H, ring, ring, x, h0, out, w_ih, dxt,
                                     dw_ih, dw_hh, NULL, NULL);
    return FN(cell_weight_grads)(1, n * B, I, H, H, ring, ring, x + t * B * I,
                                 out + (t - 1) * B * H, NULL, w_ih, dxt, dw_ih, dw_hh, NULL, NULL);
}

TB_CLONES int FN(tb_rnn_seq_backward)(int relu, long T, long B, long I, long H,
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
                            real *trace_h,     /* (T, B, H) or NULL */
                            int *trace_exp,    /* (T, B) or NULL */
                            int *carry_exp)    /* (B,) in/out, or NULL */
{
    long BH = B * H;
    int err = 1;
    panel whh = PANEL_NONE;                                  /* W_hh (H, H), packed once */
    /* steps of da kept: all T, or a ring of `chunk` steps */
    long chunk = FN(rnn_wgrad_chunk)(T, B, I, H), kept = chunk ? chunk : T;
    /* one scratch block: da (kept, B, H), the bias gradient's running sum (H,) */
    real *da = (real *)tb_scratch(TB_SLOT_DGATES, (size_t)(kept * BH + H) * sizeof(real));
    if (!da || FN(panel_pack)(&whh, H, H, w_hh, H, 0)) goto done;
    real *db = (db_ih || db_hh) ? da + kept * BH : NULL;
    if (db) memset(db, 0, (size_t)H * sizeof(real));
    /* the running gradient on h_t lives in dh0's buffer, row b as dh * 2^e[b]
       (see "tiny gradients" in recurrent_impl.h) */
    real *dh = dh0;
    int *e = FN(carry_begin)(B, H, d_hn, NULL, carry_exp, dh, NULL);
    if (!e) goto done;
    for (long t = T - 1; t >= 0; t--) {
        real *da_t = da + (chunk ? t % chunk : t) * BH;
        FN(carry_receive)(t, B, H, d_out, dh, NULL, trace_h, trace_exp, e);  /* dh = total dL/dh_{t+1} */
        FN(rnn_pointwise_backward)(relu, BH, out + t * BH, dh, da_t);
        FN(panel_mm)(B, da_t, H, &whh, dh, H, 0, NULL);        /* dh_{t-1} = da_t @ W_hh */
        FN(renorm_scale_rows)(B, H, da_t, e, 1);               /* da_t in true scale */
        FN(cell_colsum_acc)(B, H, da_t, H, db);
        FN(renorm_carry)(B, H, dh, NULL, e);
        /* a block of steps [t, t + n) complete: its weight gradients */
        if (chunk && t % chunk == 0
            && FN(rnn_wgrad_block)(t, T - t < chunk ? T - t : chunk, B, I, H, da, x, h0, out, w_ih,
                                   dx, dw_ih, dw_hh))
            goto done;
    }
    if (!chunk && FN(cell_weight_grads)(T, B, I, H, H, da, da, x, h0, out, w_ih, dx, dw_ih, dw_hh,
                                        NULL, NULL))
        goto done;
    FN(carry_end)(B, H, dh0, NULL, e, carry_exp);
    if (db) FN(cell_add2)(H, db_ih, db_hh, db);
    err = 0;
done:
    panel_free(&whh);
    tb_scratch_done(TB_SLOT_EXPS);
    tb_scratch_done(TB_SLOT_DGATES);
    return err;
}
