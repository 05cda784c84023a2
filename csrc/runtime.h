/* runtime.h -- what every kernel file shares (private: cffi never sees it).
 *
 *   - the per-thread scratch allocator: every temporary a kernel needs comes
 *     from tb_scratch, the one place that allocates (and the one place a test
 *     can make fail, see tb_fail_alloc_after in tinybptt.h);
 *   - the instruction set chosen once at run time (tb_isa), which both the
 *     GEMM and the recurrent per-step product dispatch on;
 *   - TB_CLONES and TB_CLONES_FMA, for elementwise loops compiled once per
 *     instruction set.
 *
 * Writing code once for float and double is for_each_dtype.h's job.
 */
#ifndef TINYBPTT_RUNTIME_H
#define TINYBPTT_RUNTIME_H

#include <stddef.h>
#include "tinybptt.h"

/* Elementwise loops are compiled three times (baseline x86-64; x86-64-v3:
   AVX2 and FMA; x86-64-v4: AVX-512) and the loader picks the best one for the
   CPU.  Such loops are written branch-free, so that each clone vectorises.
   TB_CLONES_FMA also lets the clones that have FMA fuse a * b + c into one
   rounding (fp-contract=fast; -std=c11 turns that off everywhere else): for
   the loops over vmath.h's tanh and sigmoid, whose polynomials are mostly
   such steps (the LSTM's gate loop ran 1.3x faster).  The derivative loops
   keep TB_CLONES: fused, 1 - y*y would round differently from the same
   formula in the NumPy reference, and they wait on memory, not arithmetic. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define TB_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#define TB_CLONES_FMA __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"), \
                                     optimize("fp-contract=fast")))
#else
#define TB_CLONES
#define TB_CLONES_FMA
#endif

/* ---- instruction set ------------------------------------------------------
   The best the CPU has (TINYBPTT_ISA=portable|avx2|avx512 in the environment
   asks for another; ignored if the CPU lacks it), or the one a test chose with
   tb_select_isa.  Ordered best first. */
enum { TB_ISA_AVX512, TB_ISA_AVX2, TB_ISA_PORTABLE, TB_NUM_ISAS };
int tb_isa(void);

/* ---- threads ---------------------------------------------------------------
   tb_threads_for(work, bytes): how many threads a product of `work`
   multiply-adds over `bytes` of operands runs on: at most
   tb_get_num_threads(), and only as many as each get a share worth waking a
   thread for (the rule, and the measurements behind it, are in runtime.c).
   1 when built without OpenMP.  Every parallel product (gemm_impl.h,
   recurrent_mm.c) asks here, so the rule lives in one place. */
int tb_threads_for(double work, double bytes);

/* ---- per-thread scratch ---------------------------------------------------
   tb_scratch(slot, bytes): at least `bytes` of 64-byte-aligned memory owned by
   the calling thread, contents undefined, or NULL when out of memory.  Each
   slot is one buffer kept between calls and grown on demand (so a long
   sequence does not pay a fresh, page-faulting malloc per call); a size of 0
   is a valid request.  A function must not use a slot that a function it
   calls also uses; the slots below are assigned so that none does.
   tb_scratch_done(slot) after use gives very large buffers back; all are
   freed when the thread exits. */
enum {
    TB_SLOT_GEMM,     /* the GEMM's packed blocks */
    TB_SLOT_PANEL,    /* W_hh packed once per sequence (recurrent_mm.c) */
    TB_SLOT_DGATES,   /* a backward pass's gate gradients */
    TB_SLOT_MISC,     /* per-call temporaries (the largest: the RNN forward's packed W_ih^T, I*H values) */
    TB_SLOT_DW,       /* the weight-gradient product's result */
    TB_SLOT_EXPS,     /* a sequence backward's per-row exponents (recurrent_impl.h, "tiny gradients") */
    TB_NUM_SLOTS
};
void *tb_scratch(int slot, size_t bytes);
void tb_scratch_done(int slot);

#endif /* TINYBPTT_RUNTIME_H */
