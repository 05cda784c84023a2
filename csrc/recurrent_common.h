/* recurrent_common.h -- what rnn.c, lstm.c, gru.c and recurrent_mm.c share.
 *
 * Not part of the public API (that is tinybptt.h).  Each cell's algorithm is
 * written once, over the type `real`, in csrc/<cell>_impl.h, and its .c file
 * instantiates it for float and double (for_each_dtype.h):
 *
 *     #define TB_TEMPLATE "lstm_impl.h"
 *     #include "for_each_dtype.h"          -> tb_lstm_seq_forward_f32, ..._f64
 *
 * Inside a template, FN(name) spells name_f32 or name_f64 and GEMM is the
 * library GEMM for the current type.  The helpers the cells share (bias rows,
 * column sums, the weight-gradient product, the per-step product over a
 * packed W_hh, the carried gradient of a sequence backward from its start to
 * its end) are a template too, recurrent_impl.h, instantiated below.
 */
#ifndef TINYBPTT_RECURRENT_COMMON_H
#define TINYBPTT_RECURRENT_COMMON_H

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "runtime.h"
#include "vmath.h"

#define GEMM FN(tb_gemm)

/* Ask for the cache line at p ahead of its use: a hint, which changes no
   result (and does nothing with a compiler that has no such builtin). */
#ifdef __GNUC__
#define TB_PREFETCH(p) __builtin_prefetch((const void *)(p))
#else
#define TB_PREFETCH(p) ((void)(p))
#endif

/* ---- the per-step product (recurrent_mm.c) ---------------------------------
   Every step of a sequence multiplies a few rows by the same W_hh, so W_hh is
   packed once per sequence into column panels (a `panel`), and every step
   calls panel_mm:  C (M, N) = [C if accumulate] + [init (N,) if not NULL]
   + A (M, K) @ op(W) (K, N), where op(W) is W (K, N) with row stride ldw or,
   if trans, the transpose of W (N, K).

   op(W) as vl-wide column panels: element (k, n) at p[(n/vl)*qs + k*ks + n%vl].
   Packed (owned, in the runtime's TB_SLOT_PANEL): qs = K*vl, ks = vl.  W itself
   when op(W) = W and N is a multiple of vl: qs = vl, ks = ldw (nothing copied).
   A panel starts as PANEL_NONE, and panel_free is safe on one that was never
   packed, so error paths can always call it. */
typedef struct { const void *p; long K, N, vl, qs, ks; int owned; } panel;
#define PANEL_NONE { NULL, 0, 0, 0, 0, 0, 0 }
void panel_free(panel *P);

/* ---- tiny gradients (the renorm_* helpers in recurrent_impl.h) -------------
   The sequence backward keeps the largest |entry| of the gradient it carries
   from step to step, f * 2^k with f in [0.5, 1), at |k| <= TB_RENORM_EXP:
   far from float's smallest normal number (2^-126) and its largest (2^128). */
#define TB_RENORM_EXP 60

#define TB_TEMPLATE "recurrent_impl.h"
#include "for_each_dtype.h"

#endif /* TINYBPTT_RECURRENT_COMMON_H */
