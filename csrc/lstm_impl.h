/* lstm_impl.h -- the LSTM written once over the type `real`.
 *
 * Included twice by lstm.c (float/f32, double/f64); see for_each_dtype.h.
 * No include guard on purpose.
 *
 *   (i, f, g, o) = (sigmoid, sigmoid, tanh, sigmoid)(W_ih x + b_ih + W_hh h + b_hh)
 *   c' = f*c + i*g,   h' = o*tanh(c')
 *
 * Workspace written by forward, read by backward:
 *   gates  (.., B, 4H)  the ACTIVATED gates i, f, g, o (so every derivative
 *                       is a polynomial in a saved output: y(1-y), 1-y^2)
 *   tanh_c (.., B, H)   tanh(c')
 */

/* ---- the elementwise part of one step, shared by step and sequence kernels */

/* Speed: the next step's block, fetched while this step computes.
   In the sequence forward pass each step's product writes its block of
   `gates`, a stretch of memory no step has touched yet (the backward pass
   reads it much later), so each cache line it writes is first fetched from
   memory and the product waits for every one in turn.  The gate loop below
   is busy with transcendental functions and hardly touches memory, so it asks
   for the next step's block a row at a time, and the block arrives while
   there is work to hide the wait: a float32 sequence forward at T = 1000,
   B = 8, H = 64 on one core, 7.1 -> 6.7 ms (medians of six alternating runs;
   at T = 100, B = 32, H = 64 the same with or without).  A hint only: no
   result changes.  (Not done elsewhere because it measured no gain: the
   GRU's and RNN's gate loops read their cold block themselves, in order,
   which the CPU's own prefetcher follows; a backward gate loop is a few
   multiplies per element, as bound by memory as the fetch would be.)
   prefetch(p, n): ask for the n reals at p; nothing if p is NULL. */
static inline void FN(lstm_prefetch)(const real *p, long n)
{
    if (p)
        for (long k = 0; k < n; k += 64 / (long)sizeof(real)) TB_PREFETCH(p + k);
}

/* gates (B, 4H): the full pre-activations on entry, activated i, f, g, o on exit.
   next: the block the next step writes, fetched row by row meanwhile
   (see lstm_prefetch), or NULL.
   (Tried and not kept: a row as four loops, one per nonlinearity over i and f,
   g, o, then c' and tanh(c'), so that more independent work is in flight than
   one element's chain from the gates through c' to h': the same results, bit
   for bit, and the float32 sequence forward at T = 100, B = 32, I = 2, H = 64
   0.99 of the time, medians of five alternating runs.) */
TB_CLONES_FMA static void FN(lstm_pointwise_forward)(long B, long H,
                                       const real *restrict c_prev, /* (B, H) */
                                       real *restrict gates,        /* (B, 4H) in place */
                                       real *restrict tanh_c,       /* (B, H) */
                                       real *restrict h_new,        /* (B, H) */
                                       real *restrict c_new,        /* (B, H) */
                                       const real *next)            /* (B, 4H) or NULL */
{
    for (long b = 0; b < B; b++) {
        FN(lstm_prefetch)(next ? next + b * 4 * H : NULL, 4 * H);
        real *ai = gates + b * 4 * H, *af = ai + H, *ag = af + H, *ao = ag + H;
        const real *cp = c_prev + b * H;
        real *tc = tanh_c + b * H, *hn = h_new + b * H, *cn = c_new + b * H;
        for (long j = 0; j < H; j++) {
            real i = FN(vm_sigmoid)(ai[j]);
            real f = FN(vm_sigmoid)(af[j]);
            real g = FN(vm_tanh)(ag[j]);
            real o = FN(vm_sigmoid)(ao[j]);
            real c = f * cp[j] + i * g;
            real t = FN(vm_tanh)(c);
            ai[j] = i; af[j] = f; ag[j] = g; ao[j] = o;
            cn[j] = c; tc[j] = t; hn[j] = o * t;
        }
    }
}

/* dh is the total gradient on h'; dc holds the gradient reaching c' from
   later steps on entry and the gradient on c (the previous cell state) on
   exit.  Writes dgates = dL/d(pre-activations) and dc_total, the total
   gradient on c' (including the path through h' = o * tanh(c')). */
TB_CLONES static void FN(lstm_pointwise_backward)(long B, long H,
                                        const real *restrict gates,  /* (B, 4H) */
                                        const real *restrict tanh_c, /* (B, H) */
                                        const real *restrict c_prev, /* (B, H) */
                                        const real *restrict dh,     /* (B, H) */
                                        real *restrict dc,           /* (B, H) in/out */
                                        real *restrict dc_total,     /* (B, H) */
                                        real *restrict dgates)       /* (B, 4H) */
{
    for (long b = 0; b < B; b++) {
        const real *gi = gates + b * 4 * H, *gf = gi + H, *gg = gf + H, *go = gg + H;
        real *di = dgates + b * 4 * H, *df = di + H, *dg = df + H, *dout = dg + H;
        for (long j = 0; j < H; j++) {
            long k = b * H + j;
            real i = gi[j], f = gf[j], g = gg[j], o = go[j], t = tanh_c[k];
            real dct = dc[k] + dh[k] * o * ((real)1 - t * t);
            dc_total[k] = dct;
            di[j] = dct * g * i * ((real)1 - i);
            df[j] = dct * c_prev[k] * f * ((real)1 - f);
            dg[j] = dct * i * ((real)1 - g * g);
            dout[j] = dh[k] * t * o * ((real)1 - o);
            dc[k] = dct * f;
        }
    }
}

/* What the backward gate loop waits for.  Per step it reads a (B, 4H) block
   of gates and (B, H) blocks of tanh_c and c_prev that the forward pass wrote
   long before, and does a few multiplies per element: at T = 100, B = 32,
   I = 2, H = 64 (float32, one Zen 4 core) it takes about three times as long
   per step as at T = 8, where those blocks are still in the core's L2 cache
   (profiled against the same step's product, which takes the same time in
   both).  Tried against that and not kept, each measured in the sequence
   kernels at that shape, alternating runs, medians (forward, backward, new /
   old):
   - not saving tanh_c, recomputing tanh(c') from c_out in this loop (c_out of
     step t was read one step earlier, as c_prev, so only gates and c_prev
     come from far away): 0.986, 0.998 -- two thirds of what the loop reads
     is the gate block, which stays;
   - asking for step t-1's blocks before step t's product (about 9 us of
     arithmetic from cache), all at once or a quarter of the rows before each
     quarter of the product: backward 0.97-1.01, within the noise.  Why is
     not known; a guess is that requests and the loop's own loads share the
     few cache misses a core keeps in flight, which the product needs too;
   - writing the trace of dh from this loop, which reads dh anyway, instead of
     copying it per step (cell_record): backward 0.986;
   - the same, the other way round: the product writing dh_{t-1} straight into
     the trace's row for t-1, where the next step's gate loop reads it (no copy
     at all): backward 1.013;
   - asking for step t-1's rows from this loop, row by row, into the L2 cache
     rather than L1 (a hint for one or two steps ahead): backward 1.00, 1.00;
   - non-temporal (streaming) stores for both traces, which no step reads
     back (dc_total through a row in cache, then streamed): backward 0.994.
     Streaming the forward's gate and tanh_c blocks instead (the product and
     the gate loop working in a block that stays in cache) made the forward
     1.14 and the backward 1.04: the backward then reads them from memory. */

/* ---- one step */

int FN(tb_lstm_step_forward)(long B, long I, long H,
                             const real *x,    /* (B, I) */
                             const real *h,    /* (B, H) */
                             const real *c,    /* (B, H) */
                             const real *w_ih, /* (4H, I) */
                             const real *w_hh, /* (4H, H) */
                             const real *b_ih, /* (4H,) or NULL */
                             const real *b_hh, /* (4H,) or NULL */
                             real *gates,      /* (B, 4H) */
                             real *tanh_c,     /* (B, H) */
                             real *h_new,      /* (B, H) */
                             real *c_new)      /* (B, H) */
{
    long G4 = 4 * H;
    if (GEMM(0, 1, B, G4, I, 1, x, I, w_ih, I, 0, gates, G4)      /* a  = x @ W_ih^T */
        || GEMM(0, 1, B, G4, H, 1, h, H, w_hh, H, 1, gates, G4))  /* a += h @ W_hh^T */
        return 1;
    FN(cell_add_bias_rows)(B, G4, gates, b_ih, b_hh);             /* a += b_ih + b_hh */
    FN(lstm_pointwise_forward)(B, H, c, gates, tanh_c, h_new, c_new, NULL);
    return 0;
}

int FN(tb_lstm_step_backward)(long B, long I, long H,
                              const real *x,      /* (B, I) */
                              const real *h,      /* (B, H) */
                              const real *c,      /* (B, H) */
                              const real *w_ih,   /* (4H, I) */
                              const real *w_hh,   /* (4H, H) */
                              const real *gates,  /* (B, 4H) */
                              const real *tanh_c, /* (B, H) */
                              const real *d_h,    /* (B, H) */
                              const real *d_c,    /* (B, H) or NULL */
                              real *dx,           /* (B, I) or NULL */
                              real *dh,           /* (B, H) */
                              real *dc,           /* (B, H) */
                              real *dw_ih,        /* (4H, I) */
                              real *dw_hh,        /* (4H, H) */
                              real *db_ih,        /* (4H,) or NULL */
                              real *db_hh)        /* (4H,) or NULL */
{
    long G4 = 4 * H;
    int err = 1;
    /* one scratch block: dgates (B, 4H), then dc_total (B, H) */
    real *dgates = (real *)tb_scratch(TB_SLOT_DGATES, (size_t)(B * G4 + B * H) * sizeof(real));
    if (!dgates) goto done;
    real *dc_total = dgates + B * G4;
    FN(cell_copy_or_zero)(B * H, d_c, dc);
    FN(lstm_pointwise_backward)(B, H, gates, tanh_c, c, d_h, dc, dc_total, dgates);
    if (GEMM(0, 0, B, H, G4, 1, dgates, G4, w_hh, H, 0, dh, H)  /* dh = dgates @ W_hh */
        || FN(cell_weight_grads)(1, B, I, H, G4, dgates, dgates, x, h, NULL, w_ih, dx, dw_ih, dw_hh, db_ih, db_hh))
        goto done;
    err = 0;
done:
    tb_scratch_done(TB_SLOT_DGATES);
    return err;
}

/* ---- a whole sequence
 *
 * Forward: each step is one product over both halves and the bias,
 *   a = [x_t | h_{t-1} | 1] @ [W_ih | W_hh | b_ih + b_hh]^T      (B, 4H)
 * with the weights packed once (panel_pack) and the step's rows gathered
 * into a (B, I+H+1) block; a register-tiled pass (panel_mm) writes the
 * step's block of `gates`, then the gate nonlinearities.
 *
 * Backward walks the steps in reverse, keeping every step's dgates in one
 * (T, B, 4H) scratch block laid out for the weight gradients, which are then
 * one GEMM over all steps; the bias gradients are summed step by step while
 * dgates is still in cache.  (Or, for a layer whose
 * weight gradients fit the cache, those too are summed a few steps at a time:
 * see "the weight gradients step by step" below.)
 *
 * Why the input half is in each step's product rather than one GEMM over all
 * T*B rows before the loop (gates = X @ W_ih^T, then each step adds
 * h_{t-1} @ W_hh^T): that GEMM writes the whole (T, B, 4H) block, which the
 * loop then reads back from memory one step at a time; here each step's
 * block is written once, by its own product, with the K = I extra rows
 * costing what any other rows of the product cost.  Measured on one Zen 4
 * core, float32 sequence forward, one GEMM -> per step (ms, medians of
 * alternating runs): T = 100, B = 32, I = 2, H = 64 (the training loop's)
 * 1.98 -> 1.73; T = 1000, B = 8, I = H = 64: 8.4 -> 7.2; T = 100, B = 32,
 * I = H = 256: 36.7 -> 36.4.
 */

TB_CLONES int FN(tb_lstm_seq_forward)(long T, long B, long I, long H,
                            const real *x,    /* (T, B, I) */
                            const real *h0,   /* (B, H) */
                            const real *c0,   /* (B, H) */
                            const real *w_ih, /* (4H, I) */
                            const real *w_hh, /* (4H, H) */
                            const real *b_ih, /* (4H,) or NULL */
                            const real *b_hh, /* (4H,) or NULL */
                            real *gates,      /* (T, B, 4H) */
                            real *tanh_c,     /* (T, B, H) */
                            real *out,        /* (T, B, H) */
                            real *c_out)      /* (T, B, H) */
{
    long G4 = 4 * H, BH = B * H, K1 = I + H + 1;
    int err = 1;
    panel wT = PANEL_NONE;                                    /* [W_ih | W_hh | b]^T (I+H+1, 4H), packed once */
    /* one scratch block: [W_ih | W_hh | b] (4H, I+H+1) for the packing, then a step's rows (B, I+H+1) */
    real *w = (real *)tb_scratch(TB_SLOT_MISC, (size_t)(G4 * K1 + B * K1) * sizeof(real));
    if (!w) goto done;
    real *xh = w + G4 * K1;
    FN(cell_rows_and_one)(G4, w_ih, I, w_hh, H, w);
    for (long j = 0; j < G4; j++)                             /* the last column: b_ih + b_hh */
        w[j * K1 + I + H] = (b_ih ? b_ih[j] : (real)0) + (b_hh ? b_hh[j] : (real)0);
    if (FN(panel_pack)(&wT, K1, G4, w, K1, 1)) goto done;
    for (long t = 0; t < T; t++) {
        const real *h_prev = t ? out + (t - 1) * BH : h0;
        const real *c_prev = t ? c_out + (t - 1) * BH : c0;
        real *a = gates + t * B * G4;
        FN(cell_rows_and_one)(B, x + t * B * I, I, h_prev, H, xh);
        FN(panel_mm)(B, xh, K1, &wT, a, G4, 0, NULL);          /* a = [x_t | h_{t-1} | 1] @ [W_ih | W_hh | b]^T */
        FN(lstm_pointwise_forward)(B, H, c_prev, a, tanh_c + t * BH, out + t * BH, c_out + t * BH,
                                   t + 1 < T ? a + B * G4 : NULL);
    }
    err = 0;
done:
    panel_free(&wT);
    tb_scratch_done(TB_SLOT_MISC);
    return err;
}

/* Speed device, the weight gradients step by step.  The plain backward keeps
   every step's dgates in a (T, B, 4H) block and takes the weight gradients at
   the end as one product over all T*B rows (cell_weight_grads), which reads the
   whole block back from memory.  Instead the steps can add their shares,
     [dW_ih | dW_hh | db]^T (I+H+1, 4H) += [x_t | h_{t-1} | 1]^T @ dgates_t
   (the column of ones gives the bias gradient), while their dgates are still in
   cache: S steps at a time, enough for LSTM_WGRAD_ROWS rows (a GEMM adds into
   its sums once per call, so fewer rows per call cost more: 12.1 us per step
   for one step of 32 rows, 10.2 for four), and one (S, B, 4H) block serves
   every group.  dx, when wanted, is one product per group too.  It pays when
   the sums stay in the core's cache between groups and there is more than one
   group.  Measured on one Zen 4 core, float32, sequence backward, plain -> step
   by step (ms, medians of 20-60; T = 100 unless given):
     B = 32, I = 2, H = 64 (the training loop's): 3.37 -> 2.94
     B = 16, I = H = 64: 3.10 -> 2.67;  T = 1000, B = 8, I = H = 64: 15.1 -> 12.8
     B = 64, I = 125, H = 128: 39.8 -> 35.3;  B = 32, I = 2, H = 192: 23.7 -> 21.7
     B = 4, I = H = 32: 0.155 -> 0.154;  T = 50, B = 1, I = H = 32: 0.028 -> 0.029
     B = 32, I = H = 256 (2 MB of sums), one step at a time: 71 -> 84
   Tried and not kept: reading a group's rows h_{t-1} in place, from out
   (they are one block there, out[lo-1..hi-1]), instead of gathering
   [x_t | h_{t-1} | 1] per step: two products per group, one over the I+1 rows
   of x and ones and one over the H rows of h, saved the copy of the h rows
   (the product packs them anyway) but measured backward 2.90 -> 2.89 ms at
   the training loop's shape (without dx; medians of five alternating runs). */
#define LSTM_WGRAD_ROWS 128
#define LSTM_STEP_WGRAD_MAX_BYTES (640 * 1024)
#define LSTM_STEP_WGRAD(T, B, I, H) \
    ((T) * (B) > LSTM_WGRAD_ROWS && \
     (double)((I) + (H) + 1) * 4 * (H) * sizeof(real) <= LSTM_STEP_WGRAD_MAX_BYTES)

/* Step t's share of the weight gradients.  Its rows [x_t | h_{t-1} | 1] go to
   xh (rows, I+H+1) at row B*slot, beside its dgates in dg (rows, 4H), where
   slot counts the steps of its group from the earliest, lo; at t = lo the group
   is complete, and then dwT (I+H+1, 4H) += xh^T @ dg over its rows, and its
   dx[lo..] = dg @ W_ih when dx_lo is not NULL.  Nonzero if the GEMM's scratch
   memory could not be had. */
static int FN(lstm_step_wgrad)(long B, long I, long H, long slot, long rows,
                               const real *x_t,    /* (B, I) */
                               const real *h_prev, /* (B, H) */
                               const real *w_ih,   /* (4H, I) */
                               const real *dg,     /* (rows, 4H), true scale */
                               real *xh,           /* (rows, I+H+1) */
                               real *dwT,          /* (I+H+1, 4H) accumulated */
                               real *dx_lo)        /* (rows, I) or NULL */
{
    long G4 = 4 * H, K1 = I + H + 1;
    FN(cell_rows_and_one)(B, x_t, I, h_prev, H, xh + slot * B * K1);
    return slot == 0 && (GEMM(1, 0, K1, G4, rows, 1, xh, K1, dg, G4, 1, dwT, G4)
                         || (dx_lo && GEMM(0, 0, rows, I, G4, 1, dg, G4, w_ih, I, 0, dx_lo, I)));
}

/* ---- the sequence backward, in parts */

/* The backward's one scratch block (TB_SLOT_DGATES), as lstm_back_scratch
   lays it out. */
typedef struct {
    int per_step;    /* the weight gradients step by step (LSTM_STEP_WGRAD) */
    long S;          /* steps per weight-gradient product: T, or fewer step by step */
    real *dgates;    /* (S, B, 4H) */
    real *dc_total;  /* (B, H): a home for dc_total when trace_c is not wanted */
    real *db;        /* (4H,) the bias gradient's running sum; NULL without biases or step by step */
    real *xh;        /* step by step: the rows [x_t | h_{t-1} | 1] (S, B, I+H+1) */
    real *dwT;       /* step by step: the sums [dW_ih | dW_hh | db]^T (I+H+1, 4H) */
} FN(lstm_back_buffers);

/* Takes the scratch block for a backward over T steps, lays it out in s and
   zeroes its running sums; nonzero if it could not be had. */
static int FN(lstm_back_scratch)(long T, long B, long I, long H, int want_db, FN(lstm_back_buffers) *s)
{
    long G4 = 4 * H, BH = B * H, K1 = I + H + 1;
    s->per_step = LSTM_STEP_WGRAD(T, B, I, H);
    s->S = s->per_step ? (LSTM_WGRAD_ROWS + B - 1) / B : T;
    /* one scratch block: dgates ((T, B, 4H), or (S, B, 4H) when the weight gradients are
       taken step by step), a (B, H) home for dc_total when trace_c is not wanted, then
       either the bias gradient's running sum (4H,) or, step by step, the rows
       [x_t | h_{t-1} | 1] (S, B, I+H+1) and the sums [dW_ih | dW_hh | db]^T (I+H+1, 4H) */
    long ng = s->S * B * G4;
    s->dgates = (real *)tb_scratch(TB_SLOT_DGATES,
                                   (size_t)(ng + BH + (s->per_step ? s->S * B * K1 + K1 * G4 : G4)) * sizeof(real));
    if (!s->dgates) return 1;
    s->dc_total = s->dgates + ng;
    s->db = want_db && !s->per_step ? s->dc_total + BH : NULL;
    s->xh = s->dc_total + BH;
    s->dwT = s->xh + s->S * B * K1;
    if (s->db) memset(s->db, 0, (size_t)G4 * sizeof(real));
    if (s->per_step) memset(s->dwT, 0, (size_t)(K1 * G4) * sizeof(real));
    return 0;
}

/* One step of the reverse walk after dh, the total gradient on h_t, has
   arrived; dh and dc (the gradient reaching c_t from later steps) are carried
   row b at exponent e[b].  Writes the step's gate gradients dg (B, 4H) and the total
   gradient on c_t to dc_total; leaves in dc the gradient on c_{t-1} and in dh
   the one on h_{t-1}; brings dg to true scale and adds its column sums to db
   (unless NULL).  Compiled per instruction set for those column sums. */
TB_CLONES static void FN(lstm_back_step)(long B, long H, const int *e, const panel *whh,
                                         const real *gates_t,  /* (B, 4H) */
                                         const real *tanh_c_t, /* (B, H) */
                                         const real *c_prev,   /* (B, H) */
                                         real *dh,             /* (B, H) in/out */
                                         real *dc,             /* (B, H) in/out */
                                         real *dc_total,       /* (B, H) */
                                         real *dg,             /* (B, 4H) */
                                         real *db)             /* (4H,) or NULL */
{
    long G4 = 4 * H;
    FN(lstm_pointwise_backward)(B, H, gates_t, tanh_c_t, c_prev, dh, dc, dc_total, dg);
    FN(panel_mm)(B, dg, G4, whh, dh, H, 0, NULL);              /* dh_{t-1} = dgates_t @ W_hh */
    FN(renorm_scale_rows)(B, G4, dg, e, 1);                    /* dgates_t in true scale */
    FN(cell_colsum_acc)(B, G4, dg, G4, db);                    /* db += column sums of dgates_t */
}

/* After the walk: dW_ih, dW_hh, db_ih and db_hh (NULL skipped) += their sums,
   from the step-by-step sums or, otherwise, as one product over all T steps'
   dgates (which also writes dx unless NULL) and the bias gradient's running
   sum.  Nonzero if the GEMM's scratch memory could not be had.  Compiled per
   instruction set for its adds. */
TB_CLONES static int FN(lstm_back_weight_grads)(long T, long B, long I, long H,
                                                const FN(lstm_back_buffers) *s,
                                                const real *x,    /* (T, B, I) */
                                                const real *h0,   /* (B, H) */
                                                const real *out,  /* (T, B, H) */
                                                const real *w_ih, /* (4H, I) */
                                                real *dx,         /* (T, B, I) or NULL */
                                                real *dw_ih,      /* (4H, I) */
                                                real *dw_hh,      /* (4H, H) */
                                                real *db_ih,      /* (4H,) or NULL */
                                                real *db_hh)      /* (4H,) or NULL */
{
    long G4 = 4 * H;
    if (s->per_step) {
        FN(wgrad_add_t)(I, G4, s->dwT, dw_ih);                 /* dW_ih += its rows of dwT, transposed */
        FN(wgrad_add_t)(H, G4, s->dwT + I * G4, dw_hh);
        FN(cell_add2)(G4, db_ih, db_hh, s->dwT + (I + H) * G4);
    } else if (FN(cell_weight_grads)(T, B, I, H, G4, s->dgates, s->dgates, x, h0, out, w_ih, dx, dw_ih, dw_hh,
                                     NULL, NULL)) {
        return 1;
    }
    if (s->db) FN(cell_add2)(G4, db_ih, db_hh, s->db);
    return 0;
}

TB_CLONES int FN(tb_lstm_seq_backward)(long T, long B, long I, long H,
                             const real *x,      /* (T, B, I) */
                             const real *h0,     /* (B, H) */
                             const real *c0,     /* (B, H) */
                             const real *w_ih,   /* (4H, I) */
                             const real *w_hh,   /* (4H, H) */
                             const real *gates,  /* (T, B, 4H) */
                             const real *tanh_c, /* (T, B, H) */
                             const real *out,    /* (T, B, H) */
                             const real *c_out,  /* (T, B, H) */
                             const real *d_out,  /* (T, B, H) or NULL */
                             const real *d_hn,   /* (B, H) or NULL */
                             const real *d_cn,   /* (B, H) or NULL */
                             real *dx,           /* (T, B, I) or NULL */
                             real *dh0,          /* (B, H) */
                             real *dc0,          /* (B, H) */
                             real *dw_ih,        /* (4H, I) */
                             real *dw_hh,        /* (4H, H) */
                             real *db_ih,        /* (4H,) or NULL */
                             real *db_hh,        /* (4H,) or NULL */
                             real *trace_h,      /* (T, B, H) or NULL */
                             real *trace_c,      /* (T, B, H) or NULL */
                             int *trace_exp,     /* (T, B) or NULL */
                             int *carry_exp)     /* (B,) in/out, or NULL */
{
    long G4 = 4 * H, BH = B * H;
    int err = 1;
    panel whh = PANEL_NONE;                                   /* W_hh (4H, H), packed once */
    FN(lstm_back_buffers) s;
    if (FN(lstm_back_scratch)(T, B, I, H, db_ih || db_hh, &s) || FN(panel_pack)(&whh, G4, H, w_hh, H, 0))
        goto done;
    /* the running gradients on h_t and c_t live in dh0's and dc0's buffers,
       row b as dh * 2^e[b] and dc * 2^e[b] (see "tiny gradients" in recurrent_impl.h) */
    real *dh = dh0, *dc = dc0;
    int *e = FN(carry_begin)(B, H, d_hn, d_cn, carry_exp, dh, dc);
    if (!e) goto done;
    for (long t = T - 1; t >= 0; t--) {
        /* t's group of S steps, counted from T - 1 down, is lo..hi (all steps when not step by step) */
        long hi, lo = FN(wgrad_group)(t, T, s.S, &hi);
        real *dg = s.dgates + (t - lo) * B * G4;
        FN(carry_receive)(t, B, H, d_out, dh, dc, trace_h, trace_exp, e);  /* dh = total dL/dh_{t+1} */
        FN(lstm_back_step)(B, H, e, &whh, gates + t * B * G4, tanh_c + t * BH, t ? c_out + (t - 1) * BH : c0,
                           dh, dc, trace_c ? trace_c + t * BH : s.dc_total, dg, s.db);
        if (s.per_step && FN(lstm_step_wgrad)(B, I, H, t - lo, (hi - lo + 1) * B, x + t * B * I,
                                              t ? out + (t - 1) * BH : h0, w_ih, s.dgates, s.xh, s.dwT,
                                              dx ? dx + lo * B * I : NULL))
            goto done;
        FN(renorm_carry)(B, H, dh, dc, e);
    }
    if (FN(lstm_back_weight_grads)(T, B, I, H, &s, x, h0, out, w_ih, dx, dw_ih, dw_hh, db_ih, db_hh))
        goto done;
    FN(carry_end)(B, H, dh0, dc0, e, carry_exp);
    err = 0;
done:
    panel_free(&whh);
    tb_scratch_done(TB_SLOT_EXPS);
    tb_scratch_done(TB_SLOT_DGATES);
    return err;
}
