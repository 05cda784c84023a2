/* runtime.c -- build information, thread count, flush-to-zero switch. */
#include <stdio.h>
#include "tinybptt.h"

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#include <pmmintrin.h>
#define TB_X86 1
#endif

#ifdef _OPENMP
#include <omp.h>
#endif

static int tb_num_threads = 1;

/* Provided by gemm.c: name of the micro-kernel chosen by CPU dispatch. */
const char *tb_gemm_kernel_name(void);

const char *tb_build_info(void)
{
    static _Thread_local char info[256]; /* per thread: two threads may ask at once */
    snprintf(info, sizeof info, "tinybptt C kernels; gemm=%s; openmp=%s; compiler=%s",
             tb_gemm_kernel_name(),
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
    tb_num_threads = n;
#ifdef _OPENMP
    omp_set_num_threads(n);
#endif
}

int tb_get_num_threads(void) { return tb_num_threads; }

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
