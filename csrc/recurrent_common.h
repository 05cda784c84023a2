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

RC_DEFINE_HELPERS(float, f32, vm_sigmoid_f32, vm_tanh_f32)
RC_DEFINE_HELPERS(double, f64, vm_sigmoid_f64, vm_tanh_f64)

#endif /* TINYBPTT_RECURRENT_COMMON_H */
