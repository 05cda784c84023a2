/*
 * tinybptt.h -- the whole C API of tinybptt, in one place.
 *
 * This file is read twice: by the C compiler (every C source in csrc includes it) and,
 * verbatim, by cffi's cdef() in csrc/build_ffi.py.  It therefore contains no
 * preprocessor lines at all: no include guards, no macros, no #include.
 *
 * Conventions
 *   - Shape letters: T time steps, B batch, I input size, H hidden size,
 *     G gates (1 RNN, 3 GRU, 4 LSTM).  Every pointer argument carries its shape.
 *   - All arrays are dense, C-contiguous, row-major.  The Python layer
 *     (tinybptt/kernels/c.py) validates shapes, dtypes and contiguity before
 *     any call reaches C; the C code trusts what it is given.
 *   - Every kernel exists as _f32 (float) and _f64 (double).
 *   - Gate order and formulas follow PyTorch:
 *       RNN  h' = act(W_ih x + b_ih + W_hh h + b_hh)
 *       LSTM (i, f, g, o): c' = f*c + i*g,  h' = o*tanh(c')
 *       GRU  (r, z, n):    n = tanh(W_in x + b_in + r*(W_hn h + b_hn)),
 *                          h' = (1-z)*n + z*h
 *   - Backward kernels ACCUMULATE (+=) into weight and bias gradients (the
 *     weights are shared by every step), and WRITE (=) input/state gradients.
 *   - Bias pointers may be NULL (bias=False); so may their gradients.
 *   - Functions returning int return 0 on success, nonzero if scratch memory
 *     could not be allocated.
 */

/* ------------------------------------------------------------------ */
/* Runtime                                                             */
/* ------------------------------------------------------------------ */

/* Human-readable description of how the library was built and which
   micro-kernel the CPU dispatch selected. */
const char *tb_build_info(void);

/* Threads used by the kernels (1 unless built with OpenMP). */
void tb_set_num_threads(int n);
int tb_get_num_threads(void);

/* Flush-to-zero / denormals-are-zero on the calling thread (x86 MXCSR).
   Off by default: tinybptt must be able to show tiny gradients. */
void tb_set_flush_to_zero(int on);
int tb_get_flush_to_zero(void);

/* ------------------------------------------------------------------ */
/* GEMM:  C = alpha * op(A) @ op(B) + beta * C   (row-major)           */
/*   op(A) is (M, K): A is (M, K) with lda >= K, or (K, M) if trans_a  */
/*   op(B) is (K, N): B is (K, N) with ldb >= N, or (N, K) if trans_b  */
/*   C is (M, N) with ldc >= N.  beta == 0 ignores C's old contents.   */
/* ------------------------------------------------------------------ */

void tb_gemm_f32(int trans_a, int trans_b, long M, long N, long K,
                 float alpha,
                 const float *A, long lda,   /* (M, K) or (K, M) */
                 const float *B, long ldb,   /* (K, N) or (N, K) */
                 float beta,
                 float *C, long ldc);        /* (M, N) */
void tb_gemm_f64(int trans_a, int trans_b, long M, long N, long K,
                 double alpha,
                 const double *A, long lda,
                 const double *B, long ldb,
                 double beta,
                 double *C, long ldc);

/* Batched product: C[s] (M, N) = A[s] (M, K) @ B[s] (K, N) for s < S, all three
   arrays dense and C-contiguous: A (S, M, K), B (S, K, N), C (S, M, N) WRITTEN.
   Any size may be 0 (K = 0 writes zeros).  Returns 0 on success, nonzero if
   scratch memory could not be allocated. */
int tb_bmm_f32(long S, long M, long N, long K, const float *A, const float *B, float *C);
int tb_bmm_f64(long S, long M, long N, long K, const double *A, const double *B, double *C);

/* The plain triple loop the optimised GEMM is tested against. */
void tb_gemm_ref_f32(int trans_a, int trans_b, long M, long N, long K,
                     float alpha, const float *A, long lda,
                     const float *B, long ldb,
                     float beta, float *C, long ldc);
void tb_gemm_ref_f64(int trans_a, int trans_b, long M, long N, long K,
                     double alpha, const double *A, long lda,
                     const double *B, long ldb,
                     double beta, double *C, long ldc);

/* ------------------------------------------------------------------ */
/* Activations over n contiguous elements.                             */
/* Backward uses the saved OUTPUT y:  tanh' = 1 - y*y,                 */
/* sigmoid' = y*(1-y), relu' = (y > 0).   dx = dy * act'(y).           */
/* sigmoid is computed in the overflow-free form.                      */
/* ------------------------------------------------------------------ */

void tb_tanh_f32(long n, const float *x, float *y);
void tb_tanh_f64(long n, const double *x, double *y);
void tb_tanh_backward_f32(long n, const float *y, const float *dy, float *dx);
void tb_tanh_backward_f64(long n, const double *y, const double *dy, double *dx);

void tb_sigmoid_f32(long n, const float *x, float *y);
void tb_sigmoid_f64(long n, const double *x, double *y);
void tb_sigmoid_backward_f32(long n, const float *y, const float *dy, float *dx);
void tb_sigmoid_backward_f64(long n, const double *y, const double *dy, double *dx);

void tb_relu_f32(long n, const float *x, float *y);
void tb_relu_f64(long n, const double *x, double *y);
void tb_relu_backward_f32(long n, const float *y, const float *dy, float *dx);
void tb_relu_backward_f64(long n, const double *y, const double *dy, double *dx);

/* ------------------------------------------------------------------ */
/* Recurrent kernels (csrc/rnn.c, csrc/lstm.c, csrc/gru.c)             */
/* ------------------------------------------------------------------ */
/* RECURRENT-API-BEGIN (owned by the recurrent-kernel work) */
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
 * (for a step, drop the T).  Functions returning int malloc their own
 * scratch (W_hh^T packed once per sequence, the GRU's per-step W_hh h, dgates
 * in backward) and return nonzero if that allocation fails.
 *
 * Sequence backward:
 *   d_out (T, B, H) gradient on out, NULL = zeros; d_hn, d_cn (B, H) extra
 *   gradient on the final h / c, NULL = zeros.  dh0 (and dc0) are WRITTEN,
 *   dx is WRITTEN unless NULL (not wanted), weight/bias grads ACCUMULATE.
 *   trace_h[t] (T, B, H), if not NULL, receives the TOTAL gradient dL/dh_{t+1}
 *   (w.r.t. out[t], through every later step); trace_c[t] likewise dL/dc_{t+1}
 *   including the path through h_{t+1} = o * tanh(c_{t+1}).
 * Step backward: d_h (B, H) is the total gradient on h_new (d_c on c_new,
 *   NULL = zeros); dx (may be NULL), dh, dc are WRITTEN, weight grads ACCUMULATE.
 */

/* ---- Elman RNN: h' = act(W_ih x + b_ih + W_hh h + b_hh), act = relu ? relu : tanh */
void tb_rnn_step_forward_f32(int relu, long B, long I, long H,
                             const float *x,     /* (B, I) */
                             const float *h,     /* (B, H) */
                             const float *w_ih,  /* (H, I) */
                             const float *w_hh,  /* (H, H) */
                             const float *b_ih,  /* (H,) or NULL */
                             const float *b_hh,  /* (H,) or NULL */
                             float *h_new);      /* (B, H) */
int tb_rnn_step_backward_f32(int relu, long B, long I, long H,
                             const float *x,     /* (B, I) */
                             const float *h,     /* (B, H) */
                             const float *w_ih,  /* (H, I) */
                             const float *w_hh,  /* (H, H) */
                             const float *h_new, /* (B, H) */
                             const float *d_h,   /* (B, H) */
                             float *dx,          /* (B, I) or NULL */
                             float *dh,          /* (B, H) */
                             float *dw_ih,       /* (H, I) */
                             float *dw_hh,       /* (H, H) */
                             float *db_ih,       /* (H,) or NULL */
                             float *db_hh);      /* (H,) or NULL */
int tb_rnn_seq_forward_f32(int relu, long T, long B, long I, long H,
                           const float *x,       /* (T, B, I) */
                           const float *h0,      /* (B, H) */
                           const float *w_ih,    /* (H, I) */
                           const float *w_hh,    /* (H, H) */
                           const float *b_ih,    /* (H,) or NULL */
                           const float *b_hh,    /* (H,) or NULL */
                           float *out);          /* (T, B, H) */
int tb_rnn_seq_backward_f32(int relu, long T, long B, long I, long H,
                            const float *x,      /* (T, B, I) */
                            const float *h0,     /* (B, H) */
                            const float *w_ih,   /* (H, I) */
                            const float *w_hh,   /* (H, H) */
                            const float *out,    /* (T, B, H) */
                            const float *d_out,  /* (T, B, H) or NULL */
                            const float *d_hn,   /* (B, H) or NULL */
                            float *dx,           /* (T, B, I) or NULL */
                            float *dh0,          /* (B, H) */
                            float *dw_ih,        /* (H, I) */
                            float *dw_hh,        /* (H, H) */
                            float *db_ih,        /* (H,) or NULL */
                            float *db_hh,        /* (H,) or NULL */
                            float *trace_h);     /* (T, B, H) or NULL */

void tb_rnn_step_forward_f64(int relu, long B, long I, long H,
                             const double *x,    /* (B, I) */
                             const double *h,    /* (B, H) */
                             const double *w_ih, /* (H, I) */
                             const double *w_hh, /* (H, H) */
                             const double *b_ih, /* (H,) or NULL */
                             const double *b_hh, /* (H,) or NULL */
                             double *h_new);     /* (B, H) */
int tb_rnn_step_backward_f64(int relu, long B, long I, long H,
                             const double *x,     /* (B, I) */
                             const double *h,     /* (B, H) */
                             const double *w_ih,  /* (H, I) */
                             const double *w_hh,  /* (H, H) */
                             const double *h_new, /* (B, H) */
                             const double *d_h,   /* (B, H) */
                             double *dx,          /* (B, I) or NULL */
                             double *dh,          /* (B, H) */
                             double *dw_ih,       /* (H, I) */
                             double *dw_hh,       /* (H, H) */
                             double *db_ih,       /* (H,) or NULL */
                             double *db_hh);      /* (H,) or NULL */
int tb_rnn_seq_forward_f64(int relu, long T, long B, long I, long H,
                           const double *x,      /* (T, B, I) */
                           const double *h0,     /* (B, H) */
                           const double *w_ih,   /* (H, I) */
                           const double *w_hh,   /* (H, H) */
                           const double *b_ih,   /* (H,) or NULL */
                           const double *b_hh,   /* (H,) or NULL */
                           double *out);         /* (T, B, H) */
int tb_rnn_seq_backward_f64(int relu, long T, long B, long I, long H,
                            const double *x,     /* (T, B, I) */
                            const double *h0,    /* (B, H) */
                            const double *w_ih,  /* (H, I) */
                            const double *w_hh,  /* (H, H) */
                            const double *out,   /* (T, B, H) */
                            const double *d_out, /* (T, B, H) or NULL */
                            const double *d_hn,  /* (B, H) or NULL */
                            double *dx,          /* (T, B, I) or NULL */
                            double *dh0,         /* (B, H) */
                            double *dw_ih,       /* (H, I) */
                            double *dw_hh,       /* (H, H) */
                            double *db_ih,       /* (H,) or NULL */
                            double *db_hh,       /* (H,) or NULL */
                            double *trace_h);    /* (T, B, H) or NULL */

/* ---- LSTM, gates (i, f, g, o): c' = f*c + i*g, h' = o*tanh(c') */
void tb_lstm_step_forward_f32(long B, long I, long H,
                              const float *x,      /* (B, I) */
                              const float *h,      /* (B, H) */
                              const float *c,      /* (B, H) */
                              const float *w_ih,   /* (4H, I) */
                              const float *w_hh,   /* (4H, H) */
                              const float *b_ih,   /* (4H,) or NULL */
                              const float *b_hh,   /* (4H,) or NULL */
                              float *gates,        /* (B, 4H) workspace out */
                              float *tanh_c,       /* (B, H) workspace out */
                              float *h_new,        /* (B, H) */
                              float *c_new);       /* (B, H) */
int tb_lstm_step_backward_f32(long B, long I, long H,
                              const float *x,      /* (B, I) */
                              const float *h,      /* (B, H) */
                              const float *c,      /* (B, H) */
                              const float *w_ih,   /* (4H, I) */
                              const float *w_hh,   /* (4H, H) */
                              const float *gates,  /* (B, 4H) */
                              const float *tanh_c, /* (B, H) */
                              const float *d_h,    /* (B, H) */
                              const float *d_c,    /* (B, H) or NULL */
                              float *dx,           /* (B, I) or NULL */
                              float *dh,           /* (B, H) */
                              float *dc,           /* (B, H) */
                              float *dw_ih,        /* (4H, I) */
                              float *dw_hh,        /* (4H, H) */
                              float *db_ih,        /* (4H,) or NULL */
                              float *db_hh);       /* (4H,) or NULL */
int tb_lstm_seq_forward_f32(long T, long B, long I, long H,
                            const float *x,        /* (T, B, I) */
                            const float *h0,       /* (B, H) */
                            const float *c0,       /* (B, H) */
                            const float *w_ih,     /* (4H, I) */
                            const float *w_hh,     /* (4H, H) */
                            const float *b_ih,     /* (4H,) or NULL */
                            const float *b_hh,     /* (4H,) or NULL */
                            float *gates,          /* (T, B, 4H) workspace out */
                            float *tanh_c,         /* (T, B, H) workspace out */
                            float *out,            /* (T, B, H) */
                            float *c_out);         /* (T, B, H) */
int tb_lstm_seq_backward_f32(long T, long B, long I, long H,
                             const float *x,       /* (T, B, I) */
                             const float *h0,      /* (B, H) */
                             const float *c0,      /* (B, H) */
                             const float *w_ih,    /* (4H, I) */
                             const float *w_hh,    /* (4H, H) */
                             const float *gates,   /* (T, B, 4H) */
                             const float *tanh_c,  /* (T, B, H) */
                             const float *out,     /* (T, B, H) */
                             const float *c_out,   /* (T, B, H) */
                             const float *d_out,   /* (T, B, H) or NULL */
                             const float *d_hn,    /* (B, H) or NULL */
                             const float *d_cn,    /* (B, H) or NULL */
                             float *dx,            /* (T, B, I) or NULL */
                             float *dh0,           /* (B, H) */
                             float *dc0,           /* (B, H) */
                             float *dw_ih,         /* (4H, I) */
                             float *dw_hh,         /* (4H, H) */
                             float *db_ih,         /* (4H,) or NULL */
                             float *db_hh,         /* (4H,) or NULL */
                             float *trace_h,       /* (T, B, H) or NULL */
                             float *trace_c);      /* (T, B, H) or NULL */

void tb_lstm_step_forward_f64(long B, long I, long H,
                              const double *x,     /* (B, I) */
                              const double *h,     /* (B, H) */
                              const double *c,     /* (B, H) */
                              const double *w_ih,  /* (4H, I) */
                              const double *w_hh,  /* (4H, H) */
                              const double *b_ih,  /* (4H,) or NULL */
                              const double *b_hh,  /* (4H,) or NULL */
                              double *gates,       /* (B, 4H) workspace out */
                              double *tanh_c,      /* (B, H) workspace out */
                              double *h_new,       /* (B, H) */
                              double *c_new);      /* (B, H) */
int tb_lstm_step_backward_f64(long B, long I, long H,
                              const double *x,      /* (B, I) */
                              const double *h,      /* (B, H) */
                              const double *c,      /* (B, H) */
                              const double *w_ih,   /* (4H, I) */
                              const double *w_hh,   /* (4H, H) */
                              const double *gates,  /* (B, 4H) */
                              const double *tanh_c, /* (B, H) */
                              const double *d_h,    /* (B, H) */
                              const double *d_c,    /* (B, H) or NULL */
                              double *dx,           /* (B, I) or NULL */
                              double *dh,           /* (B, H) */
                              double *dc,           /* (B, H) */
                              double *dw_ih,        /* (4H, I) */
                              double *dw_hh,        /* (4H, H) */
                              double *db_ih,        /* (4H,) or NULL */
                              double *db_hh);       /* (4H,) or NULL */
int tb_lstm_seq_forward_f64(long T, long B, long I, long H,
                            const double *x,       /* (T, B, I) */
                            const double *h0,      /* (B, H) */
                            const double *c0,      /* (B, H) */
                            const double *w_ih,    /* (4H, I) */
                            const double *w_hh,    /* (4H, H) */
                            const double *b_ih,    /* (4H,) or NULL */
                            const double *b_hh,    /* (4H,) or NULL */
                            double *gates,         /* (T, B, 4H) workspace out */
                            double *tanh_c,        /* (T, B, H) workspace out */
                            double *out,           /* (T, B, H) */
                            double *c_out);        /* (T, B, H) */
int tb_lstm_seq_backward_f64(long T, long B, long I, long H,
                             const double *x,      /* (T, B, I) */
                             const double *h0,     /* (B, H) */
                             const double *c0,     /* (B, H) */
                             const double *w_ih,   /* (4H, I) */
                             const double *w_hh,   /* (4H, H) */
                             const double *gates,  /* (T, B, 4H) */
                             const double *tanh_c, /* (T, B, H) */
                             const double *out,    /* (T, B, H) */
                             const double *c_out,  /* (T, B, H) */
                             const double *d_out,  /* (T, B, H) or NULL */
                             const double *d_hn,   /* (B, H) or NULL */
                             const double *d_cn,   /* (B, H) or NULL */
                             double *dx,           /* (T, B, I) or NULL */
                             double *dh0,          /* (B, H) */
                             double *dc0,          /* (B, H) */
                             double *dw_ih,        /* (4H, I) */
                             double *dw_hh,        /* (4H, H) */
                             double *db_ih,        /* (4H,) or NULL */
                             double *db_hh,        /* (4H,) or NULL */
                             double *trace_h,      /* (T, B, H) or NULL */
                             double *trace_c);     /* (T, B, H) or NULL */

/* ---- GRU, gates (r, z, n): n = tanh(W_in x + b_in + r*(W_hn h + b_hn)), h' = (1-z)*n + z*h */
int tb_gru_step_forward_f32(long B, long I, long H,
                            const float *x,        /* (B, I) */
                            const float *h,        /* (B, H) */
                            const float *w_ih,     /* (3H, I) */
                            const float *w_hh,     /* (3H, H) */
                            const float *b_ih,     /* (3H,) or NULL */
                            const float *b_hh,     /* (3H,) or NULL */
                            float *gates,          /* (B, 3H) workspace out */
                            float *hn,             /* (B, H) workspace out */
                            float *h_new);         /* (B, H) */
int tb_gru_step_backward_f32(long B, long I, long H,
                             const float *x,       /* (B, I) */
                             const float *h,       /* (B, H) */
                             const float *w_ih,    /* (3H, I) */
                             const float *w_hh,    /* (3H, H) */
                             const float *gates,   /* (B, 3H) */
                             const float *hn,      /* (B, H) */
                             const float *d_h,     /* (B, H) */
                             float *dx,            /* (B, I) or NULL */
                             float *dh,            /* (B, H) */
                             float *dw_ih,         /* (3H, I) */
                             float *dw_hh,         /* (3H, H) */
                             float *db_ih,         /* (3H,) or NULL */
                             float *db_hh);        /* (3H,) or NULL */
int tb_gru_seq_forward_f32(long T, long B, long I, long H,
                           const float *x,         /* (T, B, I) */
                           const float *h0,        /* (B, H) */
                           const float *w_ih,      /* (3H, I) */
                           const float *w_hh,      /* (3H, H) */
                           const float *b_ih,      /* (3H,) or NULL */
                           const float *b_hh,      /* (3H,) or NULL */
                           float *gates,           /* (T, B, 3H) workspace out */
                           float *hn,              /* (T, B, H) workspace out */
                           float *out);            /* (T, B, H) */
int tb_gru_seq_backward_f32(long T, long B, long I, long H,
                            const float *x,        /* (T, B, I) */
                            const float *h0,       /* (B, H) */
                            const float *w_ih,     /* (3H, I) */
                            const float *w_hh,     /* (3H, H) */
                            const float *gates,    /* (T, B, 3H) */
                            const float *hn,       /* (T, B, H) */
                            const float *out,      /* (T, B, H) */
                            const float *d_out,    /* (T, B, H) or NULL */
                            const float *d_hn,     /* (B, H) or NULL */
                            float *dx,             /* (T, B, I) or NULL */
                            float *dh0,            /* (B, H) */
                            float *dw_ih,          /* (3H, I) */
                            float *dw_hh,          /* (3H, H) */
                            float *db_ih,          /* (3H,) or NULL */
                            float *db_hh,          /* (3H,) or NULL */
                            float *trace_h);       /* (T, B, H) or NULL */

int tb_gru_step_forward_f64(long B, long I, long H,
                            const double *x,       /* (B, I) */
                            const double *h,       /* (B, H) */
                            const double *w_ih,    /* (3H, I) */
                            const double *w_hh,    /* (3H, H) */
                            const double *b_ih,    /* (3H,) or NULL */
                            const double *b_hh,    /* (3H,) or NULL */
                            double *gates,         /* (B, 3H) workspace out */
                            double *hn,            /* (B, H) workspace out */
                            double *h_new);        /* (B, H) */
int tb_gru_step_backward_f64(long B, long I, long H,
                             const double *x,      /* (B, I) */
                             const double *h,      /* (B, H) */
                             const double *w_ih,   /* (3H, I) */
                             const double *w_hh,   /* (3H, H) */
                             const double *gates,  /* (B, 3H) */
                             const double *hn,     /* (B, H) */
                             const double *d_h,    /* (B, H) */
                             double *dx,           /* (B, I) or NULL */
                             double *dh,           /* (B, H) */
                             double *dw_ih,        /* (3H, I) */
                             double *dw_hh,        /* (3H, H) */
                             double *db_ih,        /* (3H,) or NULL */
                             double *db_hh);       /* (3H,) or NULL */
int tb_gru_seq_forward_f64(long T, long B, long I, long H,
                           const double *x,        /* (T, B, I) */
                           const double *h0,       /* (B, H) */
                           const double *w_ih,     /* (3H, I) */
                           const double *w_hh,     /* (3H, H) */
                           const double *b_ih,     /* (3H,) or NULL */
                           const double *b_hh,     /* (3H,) or NULL */
                           double *gates,          /* (T, B, 3H) workspace out */
                           double *hn,             /* (T, B, H) workspace out */
                           double *out);           /* (T, B, H) */
int tb_gru_seq_backward_f64(long T, long B, long I, long H,
                            const double *x,       /* (T, B, I) */
                            const double *h0,      /* (B, H) */
                            const double *w_ih,    /* (3H, I) */
                            const double *w_hh,    /* (3H, H) */
                            const double *gates,   /* (T, B, 3H) */
                            const double *hn,      /* (T, B, H) */
                            const double *out,     /* (T, B, H) */
                            const double *d_out,   /* (T, B, H) or NULL */
                            const double *d_hn,    /* (B, H) or NULL */
                            double *dx,            /* (T, B, I) or NULL */
                            double *dh0,           /* (B, H) */
                            double *dw_ih,         /* (3H, I) */
                            double *dw_hh,         /* (3H, H) */
                            double *db_ih,         /* (3H,) or NULL */
                            double *db_hh,         /* (3H,) or NULL */
                            double *trace_h);      /* (T, B, H) or NULL */
/* ---- The per-step product of the sequence kernels (csrc/recurrent_mm.c).
   W_hh is packed once per sequence into column panels and every step runs one
   register-blocked tile loop over it.  These entry points exist for tests and
   benchmarks: C (M, N) = [C if accumulate, else init (N,) if not NULL, else 0]
   + A (M, K) @ op(W), op(W) = W (K, N) or, if trans, W^T for W (N, K).
   tb_recurrent_mm_* packs op(W) once and runs the product `reps` times
   (reps >= 1; returns nonzero if out of memory); *_ref_* is the plain loop.
   tb_recurrent_mm_kernel names the instruction set in use; tb_recurrent_mm_use
   switches it ("avx512", "avx2", "portable"; for tests) and returns 0 if the
   CPU has it, 1 (unchanged) if not. */
const char *tb_recurrent_mm_kernel(void);
int tb_recurrent_mm_use(const char *name);
int tb_recurrent_mm_f32(long M, long N, long K,
                        const float *A, long lda,     /* (M, K) */
                        const float *W, long ldw,     /* (K, N), or (N, K) if trans */
                        int trans,
                        float *C, long ldc,           /* (M, N) */
                        int accumulate,
                        const float *init,            /* (N,) or NULL */
                        long reps);
int tb_recurrent_mm_f64(long M, long N, long K,
                        const double *A, long lda, const double *W, long ldw, int trans,
                        double *C, long ldc, int accumulate, const double *init, long reps);
void tb_recurrent_mm_ref_f32(long M, long N, long K,
                             const float *A, long lda, const float *W, long ldw, int trans,
                             float *C, long ldc, int accumulate, const float *init);
void tb_recurrent_mm_ref_f64(long M, long N, long K,
                             const double *A, long lda, const double *W, long ldw, int trans,
                             double *C, long ldc, int accumulate, const double *init);

/* RECURRENT-API-END */
