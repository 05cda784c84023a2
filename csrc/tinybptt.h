/*
 * tinybptt.h -- the whole C API of tinybptt, in one place.
 *
 * The API is written in two files: this one, for what exists once, and
 * tinybptt_typed.h, for every kernel, written once over the type `real` and
 * declared here for float (_f32) and double (_f64).  cffi's cdef() reads the
 * same two files (csrc/build_ffi.py drops the preprocessor lines and makes the
 * two typed copies in text), so the Python view of the API cannot drift from
 * the C one.
 *
 * Conventions
 *   - Shape letters: T time steps, B batch, I input size, H hidden size,
 *     G gates (1 RNN, 3 GRU, 4 LSTM).  Every pointer argument carries its shape.
 *   - All arrays are dense, C-contiguous, row-major.  The Python layer
 *     (tinybptt/kernels/c*.py) validates shapes, dtypes and contiguity before
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
 *     could not be allocated (the outputs are then undefined).
 */
#ifndef TINYBPTT_H
#define TINYBPTT_H

/* ------------------------------------------------------------------ */
/* Runtime                                                             */
/* ------------------------------------------------------------------ */

/* Human-readable description of how the library was built and which
   instruction set and GEMM micro-kernel the CPU dispatch selected. */
const char *tb_build_info(void);

/* Threads used by the kernels (1 unless built with OpenMP).  n is clamped to
   [1, TB_MAX_THREADS]: OpenMP sets up a team's threads on the caller's stack,
   so an absurd count (100000) would overflow it. */
enum { TB_MAX_THREADS = 256 };
void tb_set_num_threads(int n);
int tb_get_num_threads(void);

/* Flush-to-zero / denormals-are-zero on the calling thread (x86 MXCSR).
   Off by default: tinybptt must be able to show tiny gradients. */
void tb_set_flush_to_zero(int on);
int tb_get_flush_to_zero(void);

/* The instruction set the kernels use: "avx512", "avx2" or "portable", the
   best this CPU has unless the environment variable TINYBPTT_ISA names
   another that it has.  tb_select_isa switches it for the whole process (for
   tests and benchmarks; not while other threads are inside a kernel): a name
   above or "auto"; returns 0, or 1 (unchanged) if the CPU lacks it. */
const char *tb_isa_name(void);
int tb_select_isa(const char *name);

/* For tests only: make the kernels' allocations fail on purpose.  Every
   request a kernel makes for scratch memory counts (whether or not it was
   already at hand); after tb_fail_alloc_after(n), n more requests succeed and
   the next one fails as if the system were out of memory, once; a negative n
   switches it off.  The kernel then returns nonzero after releasing what it
   took.  tb_fail_alloc_pending returns how many requests are left before the
   failure, or -1 when none is pending (it happened, or the switch is off). */
void tb_fail_alloc_after(long n);
long tb_fail_alloc_pending(void);

/* ------------------------------------------------------------------ */
/* The kernels, once per dtype                                         */
/* ------------------------------------------------------------------ */

#define TB_TEMPLATE "tinybptt_typed.h"
#include "for_each_dtype.h"

#endif /* TINYBPTT_H */
