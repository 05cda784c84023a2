/*
 * tinybptt_typed.h -- the half of the C API that exists once per dtype,
 * written once over the type `real` (see tinybptt.h for the conventions).
 *
 * FN(tb_gemm) declares tb_gemm_f32 (real = float) and tb_gemm_f64 (real =
 * double): tinybptt.h reads this file twice through for_each_dtype.h, and
 * csrc/build_ffi.py makes the same two copies in text for cffi.  Like
 * tinybptt.h, it holds no preprocessor lines.
 */

/* ------------------------------------------------------------------ */
/* GEMM:  C = alpha * op(A) @ op(B) + beta * C   (row-major)           */
/*   op(A) is (M, K): A is (M, K) with lda >= K, or (K, M) if trans_a  */
/*   op(B) is (K, N): B is (K, N) with ldb >= N, or (N, K) if trans_b  */
/*   C is (M, N) with ldc >= N.  beta == 0 ignores C's old contents.   */
/*   Returns 0, or nonzero if its scratch memory could not be had.     */
/* ------------------------------------------------------------------ */

int FN(tb_gemm)(int trans_a, int trans_b, long M, long N, long K,
                real alpha,
                const real *A, long lda,   /* (M, K) or (K, M) */
                const real *B, long ldb,   /* (K, N) or (N, K) */
                real beta,
                real *C, long ldc);        /* (M, N) */

/* Batched product: C[s] (M, N) = A[s] (M, K) @ B[s] (K, N) for s < S, all three
   arrays dense and C-contiguous: A (S, M, K), B (S, K, N), C (S, M, N) WRITTEN.
   Any size may be 0 (K = 0 writes zeros).  Returns 0 on success, nonzero if
   scratch memory could not be allocated. */
int FN(tb_bmm)(long S, long M, long N, long K, const real *A, const real *B, real *C);

/* The plain triple loop the optimised GEMM is tested against. */
void FN(tb_gemm_ref)(int trans_a, int trans_b, long M, long N, long K,
                     real alpha, const real *A, long lda,
                     const real *B, long ldb,
                     real beta, real *C, long ldc);

/* ------------------------------------------------------------------ */
/* Activations over n contiguous elements.                             */
/* Backward uses the saved OUTPUT y:  tanh' = 1 - y*y,                 */
/* sigmoid' = y*(1-y), relu' = !(y <= 0) (1 at NaN). dx = dy * act'(y).*/
/* sigmoid is computed in the overflow-free form.                      */
/* ------------------------------------------------------------------ */

void FN(tb_tanh)(long n, const real *x, real *y);
void FN(tb_tanh_backward)(long n, const real *y, const real *dy, real *dx);

void FN(tb_sigmoid)(long n, const real *x, real *y);
void FN(tb_sigmoid_backward)(long n, const real *y, const real *dy, real *dx);

void FN(tb_relu)(long n, const real *x, real *y);
void FN(tb_relu_backward)(long n, const real *y, const real *dy, real *dx);

/* ------------------------------------------------------------------ */
/* Embedding backward (csrc/embedding.c): the gradient of the lookup   */
/* out[k, :] = weight[ids[k], :] over the n ids (in C order):          */
/*   for k < n:  dweight[ids[k], :] += grad[k, :]   (ACCUMULATES)      */
/* Every id must lie in [0, V); repeated ids add up in the order k.    */
/* ------------------------------------------------------------------ */

void FN(tb_embedding_backward)(long n, long E,
                               const int64_t *ids,  /* (n,), each in [0, V) */
                               const real *grad,    /* (n, E) */
                               real *dweight);      /* (V, E) */

/* ------------------------------------------------------------------ */
/* Recurrent kernels (csrc/rnn.c, csrc/lstm.c, csrc/gru.c)             */
/* ------------------------------------------------------------------ */
/*
 * Three cells, each with a one-step pair and a whole-sequence pair:
 *   tb_<cell>_step_forward / tb_<cell>_step_backward    (per-timestep "cell" mode)
 *   tb_<cell>_seq_forward  / tb_<cell>_seq_backward     (fused loop over T steps)
 * <cell> is rnn (G=1, relu=0 for tanh, 1 for relu), lstm (G=4) or gru (G=3).
 * Weights are PyTorch's: w_ih (G*H, I), w_hh (G*H, H), b_ih, b_hh (G*H,),
 * gates stacked along the rows.
 *
 * Workspace: the forward pass WRITES what the backward pass needs into
 * caller-allocated buffers, which the caller keeps alive until backward:
 *   rnn   nothing besides out (the activation's output is h itself)
 *   lstm  gates (T, B, 4H): activated i, f, g, o;  tanh_c (T, B, H): tanh(c_t)
 *   gru   gates (T, B, 3H): activated r, z, n;     hn (T, B, H): W_hn h_{t-1} + b_hn
 * (for a step, drop the T).  The kernels take their own scratch (W_hh^T
 * packed once per sequence, the GRU's per-step W_hh h, dgates in backward)
 * from the runtime and return nonzero if it cannot be had.
 *
 * Sequence backward:
 *   d_out (T, B, H) gradient on out, NULL = zeros; d_hn, d_cn (B, H) extra
 *   gradient on the final h / c, NULL = zeros.  dh0 (and dc0) are WRITTEN,
 *   dx is WRITTEN unless NULL (not wanted), weight/bias grads ACCUMULATE.
 *   trace_h[t] (T, B, H), if not NULL, receives the TOTAL gradient dL/dh_{t+1}
 *   (w.r.t. out[t], through every later step); trace_c[t] likewise dL/dc_{t+1}
 *   including the path through h_{t+1} = o * tanh(c_{t+1}).  Both as scaled
 *   values: the true gradient of sequence b at step t is
 *   trace[t, b] * 2^trace_exp[t, b], with trace_exp (T, B) (if not NULL)
 *   receiving the exponents.
 *   The kernels carry the gradient through time as scaled values times a
 *   power of two, one per sequence of the batch, so that it never sinks into
 *   the subnormal range (see "tiny gradients" in csrc/recurrent_impl.h);
 *   while nothing under- or overflows,
 *   the results are those of plain IEEE arithmetic, bit for bit.  Where the
 *   scale moved, entries of the per-step dgates, dx, dh0, dc0 below the
 *   type's smallest normal number are 0.
 *   carry_exp (B,), if not NULL, passes the scales across calls (a sequence
 *   backpropagated in segments): on entry the true rows of d_hn, d_cn are
 *   d_hn[b] * 2^carry_exp[b], d_cn[b] * 2^carry_exp[b], and on exit dh0, dc0
 *   are left scaled, their true rows being dh0[b] * 2^carry_exp[b],
 *   dc0[b] * 2^carry_exp[b].
 * Step backward: d_h (B, H) is the total gradient on h_new (d_c on c_new,
 *   NULL = zeros); dx (may be NULL), dh, dc are WRITTEN, weight grads ACCUMULATE.
 */

/* ---- Elman RNN: h' = act(W_ih x + b_ih + W_hh h + b_hh), act = relu ? relu : tanh */
int FN(tb_rnn_step_forward)(int relu, long B, long I, long H,
                            const real *x,     /* (B, I) */
                            const real *h,     /* (B, H) */
                            const real *w_ih,  /* (H, I) */
                            const real *w_hh,  /* (H, H) */
                            const real *b_ih,  /* (H,) or NULL */
                            const real *b_hh,  /* (H,) or NULL */
                            real *h_new);      /* (B, H) */
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
                             real *db_hh);      /* (H,) or NULL */
int FN(tb_rnn_seq_forward)(int relu, long T, long B, long I, long H,
                           const real *x,       /* (T, B, I) */
                           const real *h0,      /* (B, H) */
                           const real *w_ih,    /* (H, I) */
                           const real *w_hh,    /* (H, H) */
                           const real *b_ih,    /* (H,) or NULL */
                           const real *b_hh,    /* (H,) or NULL */
                           real *out);          /* (T, B, H) */
int FN(tb_rnn_seq_backward)(int relu, long T, long B, long I, long H,
                            const real *x,      /* (T, B, I) */
                            const real *h0,     /* (B, H) */
                            const real *w_ih,   /* (H, I) */
                            const real *w_hh,   /* (H, H) */
                            const real *out,    /* (T, B, H) */
                            const real *d_out,  /* (T, B, H) or NULL */
                            const real *d_hn,   /* (B, H) or NULL */
                            real *dx,           /* (T, B, I) or NULL */
                            real *dh0,          /* (B, H) */
                            real *dw_ih,        /* (H, I) */
                            real *dw_hh,        /* (H, H) */
                            real *db_ih,        /* (H,) or NULL */
                            real *db_hh,        /* (H,) or NULL */
                            real *trace_h,      /* (T, B, H) or NULL */
                            int *trace_exp,     /* (T, B) or NULL */
                            int *carry_exp);    /* (B,) in/out, or NULL */

/* ---- LSTM, gates (i, f, g, o): c' = f*c + i*g, h' = o*tanh(c') */
int FN(tb_lstm_step_forward)(long B, long I, long H,
                             const real *x,      /* (B, I) */
                             const real *h,      /* (B, H) */
                             const real *c,      /* (B, H) */
                             const real *w_ih,   /* (4H, I) */
                             const real *w_hh,   /* (4H, H) */
                             const real *b_ih,   /* (4H,) or NULL */
                             const real *b_hh,   /* (4H,) or NULL */
                             real *gates,        /* (B, 4H) workspace out */
                             real *tanh_c,       /* (B, H) workspace out */
                             real *h_new,        /* (B, H) */
                             real *c_new);       /* (B, H) */
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
                              real *db_hh);       /* (4H,) or NULL */
int FN(tb_lstm_seq_forward)(long T, long B, long I, long H,
                            const real *x,        /* (T, B, I) */
                            const real *h0,       /* (B, H) */
                            const real *c0,       /* (B, H) */
                            const real *w_ih,     /* (4H, I) */
                            const real *w_hh,     /* (4H, H) */
                            const real *b_ih,     /* (4H,) or NULL */
                            const real *b_hh,     /* (4H,) or NULL */
                            real *gates,          /* (T, B, 4H) workspace out */
                            real *tanh_c,         /* (T, B, H) workspace out */
                            real *out,            /* (T, B, H) */
                            real *c_out);         /* (T, B, H) */
int FN(tb_lstm_seq_backward)(long T, long B, long I, long H,
                             const real *x,       /* (T, B, I) */
                             const real *h0,      /* (B, H) */
                             const real *c0,      /* (B, H) */
                             const real *w_ih,    /* (4H, I) */
                             const real *w_hh,    /* (4H, H) */
                             const real *gates,   /* (T, B, 4H) */
                             const real *tanh_c,  /* (T, B, H) */
                             const real *out,     /* (T, B, H) */
                             const real *c_out,   /* (T, B, H) */
                             const real *d_out,   /* (T, B, H) or NULL */
                             const real *d_hn,    /* (B, H) or NULL */
                             const real *d_cn,    /* (B, H) or NULL */
                             real *dx,            /* (T, B, I) or NULL */
                             real *dh0,           /* (B, H) */
                             real *dc0,           /* (B, H) */
                             real *dw_ih,         /* (4H, I) */
                             real *dw_hh,         /* (4H, H) */
                             real *db_ih,         /* (4H,) or NULL */
                             real *db_hh,         /* (4H,) or NULL */
                             real *trace_h,       /* (T, B, H) or NULL */
                             real *trace_c,       /* (T, B, H) or NULL */
                             int *trace_exp,      /* (T, B) or NULL */
                             int *carry_exp);     /* (B,) in/out, or NULL */

/* ---- GRU, gates (r, z, n): n = tanh(W_in x + b_in + r*(W_hn h + b_hn)), h' = (1-z)*n + z*h */
int FN(tb_gru_step_forward)(long B, long I, long H,
                            const real *x,        /* (B, I) */
                            const real *h,        /* (B, H) */
                            const real *w_ih,     /* (3H, I) */
                            const real *w_hh,     /* (3H, H) */
                            const real *b_ih,     /* (3H,) or NULL */
                            const real *b_hh,     /* (3H,) or NULL */
                            real *gates,          /* (B, 3H) workspace out */
                            real *hn,             /* (B, H) workspace out */
                            real *h_new);         /* (B, H) */
int FN(tb_gru_step_backward)(long B, long I, long H,
                             const real *x,       /* (B, I) */
                             const real *h,       /* (B, H) */
                             const real *w_ih,    /* (3H, I) */
                             const real *w_hh,    /* (3H, H) */
                             const real *gates,   /* (B, 3H) */
                             const real *hn,      /* (B, H) */
                             const real *d_h,     /* (B, H) */
                             real *dx,            /* (B, I) or NULL */
                             real *dh,            /* (B, H) */
                             real *dw_ih,         /* (3H, I) */
                             real *dw_hh,         /* (3H, H) */
                             real *db_ih,         /* (3H,) or NULL */
                             real *db_hh);        /* (3H,) or NULL */
int FN(tb_gru_seq_forward)(long T, long B, long I, long H,
                           const real *x,         /* (T, B, I) */
                           const real *h0,        /* (B, H) */
                           const real *w_ih,      /* (3H, I) */
                           const real *w_hh,      /* (3H, H) */
                           const real *b_ih,      /* (3H,) or NULL */
                           const real *b_hh,      /* (3H,) or NULL */
                           real *gates,           /* (T, B, 3H) workspace out */
                           real *hn,              /* (T, B, H) workspace out */
                           real *out);            /* (T, B, H) */
int FN(tb_gru_seq_backward)(long T, long B, long I, long H,
                            const real *x,        /* (T, B, I) */
                            const real *h0,       /* (B, H) */
                            const real *w_ih,     /* (3H, I) */
                            const real *w_hh,     /* (3H, H) */
                            const real *gates,    /* (T, B, 3H) */
                            const real *hn,       /* (T, B, H) */
                            const real *out,      /* (T, B, H) */
                            const real *d_out,    /* (T, B, H) or NULL */
                            const real *d_hn,     /* (B, H) or NULL */
                            real *dx,             /* (T, B, I) or NULL */
                            real *dh0,            /* (B, H) */
                            real *dw_ih,          /* (3H, I) */
                            real *dw_hh,          /* (3H, H) */
                            real *db_ih,          /* (3H,) or NULL */
                            real *db_hh,          /* (3H,) or NULL */
                            real *trace_h,        /* (T, B, H) or NULL */
                            int *trace_exp,       /* (T, B) or NULL */
                            int *carry_exp);      /* (B,) in/out, or NULL */

/* ---- The per-step product of the sequence kernels (csrc/recurrent_mm.c).
   W_hh is packed once per sequence into column panels and every step runs one
   register-blocked tile loop over it.  These entry points exist for tests and
   benchmarks: C (M, N) = [C if accumulate, else init (N,) if not NULL, else 0]
   + A (M, K) @ op(W), op(W) = W (K, N) or, if trans, W^T for W (N, K).
   tb_recurrent_mm_* packs op(W) once and runs the product `reps` times
   (reps >= 1; returns nonzero if out of memory); *_ref_* is the plain loop.
   The instruction set is the runtime's (tb_isa_name, tb_select_isa). */
int FN(tb_recurrent_mm)(long M, long N, long K,
                        const real *A, long lda,     /* (M, K) */
                        const real *W, long ldw,     /* (K, N), or (N, K) if trans */
                        int trans,
                        real *C, long ldc,           /* (M, N) */
                        int accumulate,
                        const real *init,            /* (N,) or NULL */
                        long reps);
void FN(tb_recurrent_mm_ref)(long M, long N, long K,
                             const real *A, long lda, const real *W, long ldw, int trans,
                             real *C, long ldc, int accumulate, const real *init);
