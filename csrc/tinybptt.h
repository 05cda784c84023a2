/*
 * tinybptt.h -- the whole C API of tinybptt, in one place.
 *
 * This file is read twice: by the C compiler (every csrc/*.c includes it) and,
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
/* RECURRENT-API-END */
