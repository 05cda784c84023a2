/* runtime.c -- what the kernels share: build information, thread count,
 * flush-to-zero, the instruction set chosen at run time, and the per-thread
 * scratch allocator (see runtime.h). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "runtime.h"

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#include <pmmintrin.h>
#define TB_X86 1
#endif

#ifdef _OPENMP
#include <omp.h>
#endif

/* ------------------------------------------------------------------ */
/* Instruction set                                                    */
/* ------------------------------------------------------------------ */

static const char *const isa_names[TB_NUM_ISAS] = { "avx512", "avx2", "portable" };

static int cpu_has(int isa)
{
#if defined(TB_X86) && defined(__GNUC__)
    __builtin_cpu_init();
    if (isa == TB_ISA_AVX512) return __builtin_cpu_supports("avx512f");
    if (isa == TB_ISA_AVX2) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    return isa == TB_ISA_PORTABLE;
}

static int isa_by_name(const char *name)
{
    for (int k = 0; k < TB_NUM_ISAS; k++)
        if (name && !strcmp(name, isa_names[k]) && cpu_has(k)) return k;
    return -1;
}

/* The best instruction set this CPU has, or the one TINYBPTT_ISA names. */
static int isa_auto(void)
{
    int k = isa_by_name(getenv("TINYBPTT_ISA"));
    if (k >= 0) return k;
    for (k = 0; !cpu_has(k); k++) {}
    return k;
}

static int g_isa = -1;   /* chosen once; accessed atomically */

int tb_isa(void)
{
    int k = __atomic_load_n(&g_isa, __ATOMIC_ACQUIRE);
    if (k < 0) {
        k = isa_auto();   /* idempotent: racing threads store the same value */
        __atomic_store_n(&g_isa, k, __ATOMIC_RELEASE);
    }
    return k;
}

const char *tb_isa_name(void) { return isa_names[tb_isa()]; }

int tb_select_isa(const char *name)
{
    int k = (!name || !*name || !strcmp(name, "auto")) ? isa_auto() : isa_by_name(name);
    if (k < 0) return 1;
    __atomic_store_n(&g_isa, k, __ATOMIC_RELEASE);
    return 0;
}

/* ------------------------------------------------------------------ */
/* Per-thread scratch                                                 */
/* ------------------------------------------------------------------ */
/* Buffers above this size are given back by tb_scratch_done. */
#define SCRATCH_KEEP ((size_t)256 << 20)

typedef struct { void *p; size_t n; } slot_t;
static _Thread_local slot_t slots[TB_NUM_SLOTS];
static pthread_key_t slots_key;
static pthread_once_t slots_once = PTHREAD_ONCE_INIT;

static void free_slots(void *arg)
{
    slot_t *s = (slot_t *)arg;
    for (int k = 0; k < TB_NUM_SLOTS; k++) { free(s[k].p); s[k].p = NULL; s[k].n = 0; }
}

static void make_key(void) { pthread_key_create(&slots_key, free_slots); }

/* The test switch (tb_fail_alloc_after in tinybptt.h): how many more scratch
   requests succeed before one fails; -1 when off.  One relaxed atomic load per
   request while it is off. */
static long fail_countdown = -1;

void tb_fail_alloc_after(long n) { __atomic_store_n(&fail_countdown, n < 0 ? -1 : n, __ATOMIC_RELAXED); }

long tb_fail_alloc_pending(void) { return __atomic_load_n(&fail_countdown, __ATOMIC_RELAXED); }

/* Is this request the one the test switch makes fail?  (It then switches off.) */
static int injected_failure(void)
{
    if (__atomic_load_n(&fail_countdown, __ATOMIC_RELAXED) < 0) return 0;
    return __atomic_sub_fetch(&fail_countdown, 1, __ATOMIC_RELAXED) == -1;
}

void *tb_scratch(int slot, size_t bytes)
{
    slot_t *s = &slots[slot];
    if (injected_failure()) return NULL;   /* as if out of memory; the slot keeps its buffer */
    if (s->p && bytes <= s->n) return s->p;
    pthread_once(&slots_once, make_key);
    pthread_setspecific(slots_key, slots);   /* so that thread exit frees them */
    free(s->p);
    s->p = NULL;
    s->n = 0;
    size_t want = (bytes + 4095) & ~(size_t)4095;
    if (want < bytes) return NULL;   /* size overflow */
    if (want == 0) want = 4096;      /* a request for nothing (H = 0) still gets a buffer: NULL means failure */
    void *p = NULL;
    if (posix_memalign(&p, 64, want)) return NULL;
    s->p = p;
    s->n = want;
    return p;
}

void tb_scratch_done(int slot)
{
    slot_t *s = &slots[slot];
    if (s->n > SCRATCH_KEEP) { free(s->p); s->p = NULL; s->n = 0; }
}

/* ------------------------------------------------------------------ */
/* Build information, threads, flush-to-zero                          */
/* ------------------------------------------------------------------ */

static int tb_num_threads = 1;

/* gemm.c: name of the GEMM micro-kernel in use. */
const char *tb_gemm_kernel_name(void);

const char *tb_build_info(void)
{
    static _Thread_local char info[256]; /* per thread: two threads may ask at once */
    snprintf(info, sizeof info, "tinybptt C kernels; isa=%s; gemm=%s; openmp=%s; compiler=%s",
             tb_isa_name(), tb_gemm_kernel_name(),
#ifdef _OPENMP
             "yes",
#else
             "no",
#endif
#ifdef __VERSION__
             __VERSION__
#else
             "unknown"
#endif
    );
    return info;
}

void tb_set_num_threads(int n)
{
    if (n < 1) n = 1;
    if (n > TB_MAX_THREADS) n = TB_MAX_THREADS;
    tb_num_threads = n;
#ifdef _OPENMP
    omp_set_num_threads(n);
#endif
}

int tb_get_num_threads(void) { return tb_num_threads; }

/* When two threads pay.  Splitting a product costs a few microseconds to
   hand the other thread its share and wait for it, and more that is paid
   outside the product: the other thread pulls its share of the operands into
   its own core's cache, and the calling thread has to take those lines back
   when it next writes them (the next step's gates, the next sequence's
   activations).  So a thread's share must be both large and dense: at least
   MIN_WORK_PER_THREAD multiply-adds, and at least MIN_WORK_PER_BYTE
   multiply-adds per byte of the operands that move between cores (`bytes`:
   A, B and C for a GEMM; A and C for the per-step product, whose weights stay
   in each core's cache from step to step).  Measured on an AMD EPYC (Zen 4),
   2 cores, float32, each product timed with the caller rewriting its
   operands afterwards (benchmarks/threads_sweep.py), 1 -> 2 threads:
     4 to 9 multiply-adds per byte lost: the LSTM's weight gradients of a
       128-row group in the training loop (T = 100, B = 32, I = 2, H = 64;
       2.2 M multiply-adds, 9.4 per byte) 45 -> 48 us, the RNN's over all
       steps (13 M, 7.9 per byte) 271 -> 359 us; the LSTM training step
       4.4 -> 6.8 ms when its 25 groups were split, against 4.5 with none;
     12.9, the LSTM's 128-row groups at I = H = 64: 82 -> 68 us per group,
       the sequence backward at B = 16, T = 100 1.67 -> 1.50 ms and at B = 8,
       T = 1000 9.68 -> 8.21 ms;
     32 and up: 1.6x to 2x (I = H = 256: the per-step products 37 -> 19 us
       (RNN) and 303 -> 159 us (LSTM), the weight gradients over all steps
       17.3 -> 9.2 ms).
   The minimum per thread, 2^20 multiply-adds (about 20 us of one core), keeps
   a region's fixed cost, 2 to 6 us, under a quarter of the time saved. */
#define MIN_WORK_PER_THREAD (1L << 20)
#define MIN_WORK_PER_BYTE 12

int tb_threads_for(double work, double bytes)
{
#ifdef _OPENMP
    if (work < MIN_WORK_PER_BYTE * bytes) return 1;
    double n = work / MIN_WORK_PER_THREAD;
    return n < 2 ? 1 : n < tb_num_threads ? (int)n : tb_num_threads;
#else
    (void)work; (void)bytes;
    return 1;
#endif
}

void tb_set_flush_to_zero(int on)
{
#ifdef TB_X86
    _MM_SET_FLUSH_ZERO_MODE(on ? _MM_FLUSH_ZERO_ON : _MM_FLUSH_ZERO_OFF);
    _MM_SET_DENORMALS_ZERO_MODE(on ? _MM_DENORMALS_ZERO_ON : _MM_DENORMALS_ZERO_OFF);
#else
    (void)on;
#endif
}

int tb_get_flush_to_zero(void)
{
#ifdef TB_X86
    return _MM_GET_FLUSH_ZERO_MODE() == _MM_FLUSH_ZERO_ON;
#else
    return 0;
#endif
}
