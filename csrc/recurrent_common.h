/* recurrent_common.h -- internal helpers shared by rnn.c, lstm.c and gru.c.
 *
 * Not part of the public API (that is tinybptt.h), so it may use the
 * preprocessor.  It provides two things:
 *
 *   1. The "template" machinery.  Each cell's algorithm is written ONCE, over a
 *      type called `real`, in csrc/<cell>_impl.h.  The cell's .c file includes
 *      that header twice:
 *
 *          #define real float
 *          #define SUF  f32
 *          #include "lstm_impl.h"      -> tb_lstm_seq_forward_f32, ...
 *          #undef real
 *          #undef SUF
 *          (same again with double / f64)
 *
 *      Inside an _impl.h, FN(name) spells name_f32 or name_f64, and GEMM is the
 *      library GEMM for the current type.
 *
 *   2. Small typed helpers (written for both types by one macro, like gemm.c
 *      and activations.c do): the overflow-free sigmoid and tanh (float32:
 *      the branch-free vectorisable ones of vmath.h), a transpose used to
 *      pack W_hh once per sequence, column sums for bias gradients, and an
 *      allocator that treats size 0 as a valid request.
 */
#ifndef TINYBPTT_RECURRENT_COMMON_H
#define TINYBPTT_RECURRENT_COMMON_H

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "tinybptt.h"
#include "vmath.h"

/* The elementwise gate loops are compiled three times (baseline x86-64, AVX2,
   AVX-512) and the best one for the CPU is chosen at load time, as in
   activations.c.  They are branch-free so that each clone vectorises. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define RC_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define RC_CLONES
#endif

#define RC_CAT2(a, b) a##_##b
#define RC_CAT(a, b) RC_CAT2(a, b)
/* FN(tb_lstm_seq_forward) -> tb_lstm_seq_forward_f32 when SUF is f32 */
#define FN(name) RC_CAT(name, SUF)
#define GEMM FN(tb_gemm)

/* malloc that never returns NULL for a 0-byte request (B = 0 is legal), so a
   NULL result always means "out of memory". */
static void *rc_alloc(size_t n)
{
    return malloc(n ? n : 1);
}

#define RC_DEFINE_HELPERS(real, SUF, SIGMOID, TANH)                                \
/* float: vmath.h's branch-free, vectorisable forms; double: libm */             \
static inline real rc_sigmoid_##SUF(real v) { return SIGMOID(v); }                 \
static inline real rc_tanh_##SUF(real v) { return TANH(v); }                       \
/* A[i, :] += b1 + b2 for each of M rows of N; NULL biases count as zeros.   \
   The NULL tests sit outside the loops, which stay branch-free. */             \
static void rc_add_bias_rows_##SUF(long M, long N,                                 \
                                   real *A,        /* (M, N) */                    \
                                   const real *b1, /* (N,) or NULL */              \
                                   const real *b2) /* (N,) or NULL */              \
{                                                                                  \
    if (!b1) { b1 = b2; b2 = NULL; }                                               \
    if (!b1) return;                                                               \
    for (long i = 0; i < M; i++) {                                                 \
        real *restrict a = A + i * N;                                              \
        if (b2) for (long j = 0; j < N; j++) a[j] += b1[j] + b2[j];                \
        else    for (long j = 0; j < N; j++) a[j] += b1[j];                        \
    }                                                                              \
}                                                                                  \
/* y += x over n elements; nothing if x is NULL */                                 \
static void rc_add_##SUF(long n, real *restrict y, const real *restrict x)         \
{                                                                                  \
    if (!x) return;                                                                \
    for (long k = 0; k < n; k++) y[k] += x[k];                                     \
}                                                                                  \
/* dst = src over n elements; nothing if dst is NULL (an unrequested trace) */    \
static void rc_record_##SUF(long n, real *dst, const real *src)                    \
{                                                                                  \
    if (dst) memcpy(dst, src, (size_t)n * sizeof(real));                           \
}                                                                                  \
/* At (C, R) = A^T for A (R, C) */                                                 \
static void rc_transpose_##SUF(long R, long C,                                     \
                               const real *A,  /* (R, C) */                        \
                               real *At)       /* (C, R) */                        \
{                                                                                  \
    for (long r = 0; r < R; r++)                                                   \
        for (long c = 0; c < C; c++) At[c * R + r] = A[r * C + c];                 \
}                                                                                  \
/* out[j] += sum_i A[i, j] over M rows of N columns (row stride lda);            \
   a NULL out is skipped (bias=False) */                                           \
static void rc_colsum_acc_##SUF(long M, long N,                                    \
                                const real *A, long lda, /* (M, N) */              \
                                real *out)               /* (N,) or NULL */        \
{                                                                                  \
    if (!out) return;                                                              \
    for (long i = 0; i < M; i++) {                                                 \
        const real *a = A + i * lda;                                               \
        for (long j = 0; j < N; j++) out[j] += a[j];                               \
    }                                                                              \
}                                                                                  \
/* dst = src, or zeros when src is NULL */                                         \
static void rc_copy_or_zero_##SUF(long n, const real *src, real *dst)              \
{                                                                                  \
    if (src) memcpy(dst, src, (size_t)n * sizeof(real));                           \
    else memset(dst, 0, (size_t)n * sizeof(real));                                 \
}                                                                                  \
/* After a backward loop over T steps (T = 1 for a single step): everything      \
   that is a sum or a map over time, each as ONE gemm over all T*B rows.          \
     dgx = dL/d(W_ih x_t + b_ih),  dgh = dL/d(W_hh h_{t-1} + b_hh)                \
   (the same buffer for RNN and LSTM; GRU differs in the n-gate columns).         \
   H_prev = [h0; out[0], ..., out[T-2]] is two separate arrays, so dW_hh takes    \
   two gemms: step 0 against h0, steps 1..T-1 against out[0..T-2].                \
   dW_ih, dW_hh, db_ih, db_hh ACCUMULATE; dx (if not NULL) is WRITTEN. */          \
static void rc_backward_gemms_##SUF(long T, long B, long I, long H, long GH,        \
                                    const real *dgx,  /* (T, B, GH) */            \
                                    const real *dgh,  /* (T, B, GH) */            \
                                    const real *x,    /* (T, B, I) */             \
                                    const real *h0,   /* (B, H) */                \
                                    const real *out,  /* (T, B, H), T > 1 only */ \
                                    const real *w_ih, /* (GH, I) */               \
                                    real *dx,         /* (T, B, I) or NULL */     \
                                    real *dw_ih,      /* (GH, I) */               \
                                    real *dw_hh,      /* (GH, H) */               \
                                    real *db_ih,      /* (GH,) or NULL */         \
                                    real *db_hh)      /* (GH,) or NULL */         \
{                                                                                  \
    long TB = T * B;                                                               \
    tb_gemm_##SUF(1, 0, GH, I, TB, 1, dgx, GH, x, I, 1, dw_ih, I);                 \
    tb_gemm_##SUF(1, 0, GH, H, B, 1, dgh, GH, h0, H, 1, dw_hh, H);                 \
    if (T > 1)                                                                     \
        tb_gemm_##SUF(1, 0, GH, H, (T - 1) * B, 1, dgh + B * GH, GH, out, H,       \
                      1, dw_hh, H);                                                \
    rc_colsum_acc_##SUF(TB, GH, dgx, GH, db_ih);                                   \
    rc_colsum_acc_##SUF(TB, GH, dgh, GH, db_hh);                                   \
    if (dx) tb_gemm_##SUF(0, 0, TB, I, GH, 1, dgx, GH, w_ih, I, 0, dx, I);         \
}

/* ---- the per-step product (recurrent_mm.c) ------------------------------
   W_hh is packed once per sequence into column panels; every step then calls
   rc_mm: C (M, N) = [C if accumulate] + [init (N,) if not NULL] + A (M, K) @ op(W) (K, N).
   rc_pack allocates P->p (free with rc_panel_free) and returns nonzero when
   out of memory.  op(W) is W (K, N) with row stride ldw, or, if trans, the
   transpose of W (N, K).  tinybptt.h declares the test entry points
   (tb_recurrent_mm_*, and the plain-loop reference tb_recurrent_mm_ref_*). */
/* Per-thread scratch buffers (64-byte aligned, contents undefined), one per
   slot, kept between calls; NULL when out of memory.  A function must not use
   a slot that a function it calls also uses. */
enum { RC_SLOT_PANEL = 0, RC_SLOT_DGATES = 1, RC_SLOT_MISC = 2, RC_SLOT_DW = 3 };
void *rc_scratch(int slot, size_t bytes);
void rc_scratch_done(int slot);  /* after use: gives very large buffers back */

/* op(W) (K, N) as VL-wide column panels: element (k, n) at p[(n/vl)*qs + k*ks + n%vl].
   Packed (owned, in the panel scratch slot): qs = K*vl, ks = vl.  W itself when
   op(W) = W and N is a multiple of vl: qs = vl, ks = ldw (nothing copied). */
typedef struct { const float *p; long K, N, vl, qs, ks; int owned; } rc_panel_f32;
typedef struct { const double *p; long K, N, vl, qs, ks; int owned; } rc_panel_f64;
int rc_pack_f32(rc_panel_f32 *P, long K, long N, const float *W, long ldw, int trans);
int rc_pack_f64(rc_panel_f64 *P, long K, long N, const double *W, long ldw, int trans);
void rc_panel_free_f32(rc_panel_f32 *P);
void rc_panel_free_f64(rc_panel_f64 *P);
void rc_mm_f32(long M, const float *A, long lda, const rc_panel_f32 *P,
               float *C, long ldc, int accumulate, const float *init);
void rc_mm_f64(long M, const double *A, long lda, const rc_panel_f64 *P,
               double *C, long ldc, int accumulate, const double *init);

#define RC_DEFINE_SEQ_HELPERS(real, SUF)                                             \
/* After a sequence's backward loop: the weight gradients (and dx), each a sum  \
   or a map over all T*B rows, as few big GEMMs as possible.                      \
     dgx = dL/d(W_ih x_t + b_ih),  dgh = dL/d(W_hh h_{t-1} + b_hh)  (T, B, GH)     \
   When they are one buffer (RNN, LSTM), dW_ih and dW_hh are ONE product:          \
     [dW_ih | dW_hh] = dgx^T @ [x_t | h_{t-1}]  over all rows,                     \
   so dgx is packed once and the product is twice as wide; the rows               \
   [x_t | h_{t-1}] are gathered into a scratch buffer first (a copy of x and      \
   out, cheap next to the product).  The GRU (dgx != dgh) takes two products.    \
   dW_ih, dW_hh ACCUMULATE; dx (if not NULL) is WRITTEN.  Returns nonzero if a    \
   scratch buffer could not be allocated. */                                      \
static int rc_seq_weight_grads_##SUF(long T, long B, long I, long H, long GH,        \
                                     const real *dgx,  /* (T, B, GH) */             \
                                     const real *dgh,  /* (T, B, GH) */             \
                                     const real *x,    /* (T, B, I) */              \
                                     const real *h0,   /* (B, H) */                 \
                                     const real *out,  /* (T, B, H) */              \
                                     const real *w_ih, /* (GH, I) */                \
                                     real *dx,         /* (T, B, I) or NULL */      \
                                     real *dw_ih,      /* (GH, I) */                \
                                     real *dw_hh)      /* (GH, H) */                \
{                                                                                  \
    long TB = T * B, IH = I + H;                                                   \
    if (TB == 0) return 0;                                                         \
    if (dgx == dgh) {                                                              \
        real *xh = (real *)rc_scratch(RC_SLOT_MISC, (size_t)(TB * IH) * sizeof(real)); \
        real *dw = (real *)rc_scratch(RC_SLOT_DW, (size_t)(GH * IH) * sizeof(real));   \
        if (!xh || !dw) return 1;                                                  \
        for (long t = 0; t < T; t++) {                                             \
            const real *hp = t ? out + (t - 1) * B * H : h0;                       \
            for (long b = 0; b < B; b++) {                                         \
                real *row = xh + (t * B + b) * IH;                                 \
                memcpy(row, x + (t * B + b) * I, (size_t)I * sizeof(real));        \
                memcpy(row + I, hp + b * H, (size_t)H * sizeof(real));             \
            }                                                                      \
        }                                                                          \
        tb_gemm_##SUF(1, 0, GH, IH, TB, 1, dgx, GH, xh, IH, 0, dw, IH);            \
        for (long g = 0; g < GH; g++) {                                            \
            const real *src = dw + g * IH;                                         \
            real *a = dw_ih + g * I, *b = dw_hh + g * H;                           \
            for (long k = 0; k < I; k++) a[k] += src[k];                           \
            for (long k = 0; k < H; k++) b[k] += src[I + k];                       \
        }                                                                          \
        rc_scratch_done(RC_SLOT_MISC);                                             \
        rc_scratch_done(RC_SLOT_DW);                                               \
    } else {                                                                       \
        tb_gemm_##SUF(1, 0, GH, I, TB, 1, dgx, GH, x, I, 1, dw_ih, I);             \
        tb_gemm_##SUF(1, 0, GH, H, B, 1, dgh, GH, h0, H, 1, dw_hh, H);             \
        if (T > 1)                                                                 \
            tb_gemm_##SUF(1, 0, GH, H, (T - 1) * B, 1, dgh + B * GH, GH, out, H,   \
                          1, dw_hh, H);                                            \
    }                                                                              \
    if (dx) tb_gemm_##SUF(0, 0, TB, I, GH, 1, dgx, GH, w_ih, I, 0, dx, I);         \
    return 0;                                                                      \
}                                                                                  \
/* b = b1 + b2 (either may be NULL); returns b, or NULL when both are NULL */      \
static const real *rc_bias_sum_##SUF(long n, const real *b1, const real *b2, real *b) \
{                                                                                  \
    if (!b1 && !b2) return NULL;                                                   \
    for (long j = 0; j < n; j++) b[j] = (b1 ? b1[j] : (real)0) + (b2 ? b2[j] : (real)0); \
    return b;                                                                      \
}                                                                                  \
/* db[j] += v[j] over n elements, then db2[j] += v[j] (each skipped if NULL) */    \
static void rc_add2_##SUF(long n, real *db, real *db2, const real *v)              \
{                                                                                  \
    if (db) for (long j = 0; j < n; j++) db[j] += v[j];                            \
    if (db2) for (long j = 0; j < n; j++) db2[j] += v[j];                          \
}

RC_DEFINE_HELPERS(float, f32, vm_sigmoid_f32, vm_tanh_f32)
RC_DEFINE_HELPERS(double, f64, vm_sigmoid_f64, vm_tanh_f64)
RC_DEFINE_SEQ_HELPERS(float, f32)
RC_DEFINE_SEQ_HELPERS(double, f64)

#endif /* TINYBPTT_RECURRENT_COMMON_H */
