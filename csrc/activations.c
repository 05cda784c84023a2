/* activations.c -- tanh, sigmoid, relu and their backward passes.
 *
 * Backward passes read the saved forward OUTPUT y, never the input:
 *   tanh'(x)    = 1 - y*y
 *   sigmoid'(x) = y * (1 - y)
 *   relu'(x)    = (y > 0)
 * sigmoid uses the overflow-free form: for x >= 0, 1/(1+e^-x); for x < 0,
 * e^x/(1+e^x), so exp never sees a large positive argument.
 *
 * float32 uses the branch-free, vectorisable tanh/sigmoid of vmath.h; float64
 * uses libm.  Each kernel is compiled twice (target_clones): a baseline x86-64
 * version, an AVX2 and an AVX-512 one chosen at load time on CPUs that have it.
 */
#include <math.h>
#include "tinybptt.h"
#include "vmath.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define TB_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define TB_CLONES
#endif


#define DEFINE_ACTIVATIONS(real, SUF, TANH, SIGMOID)                               \
TB_CLONES void tb_tanh_##SUF(long n, const real *x, real *y)                                 \
{                                                                                  \
    for (long k = 0; k < n; k++) y[k] = TANH(x[k]);                                \
}                                                                                  \
TB_CLONES void tb_tanh_backward_##SUF(long n, const real *y, const real *dy, real *dx)       \
{                                                                                  \
    for (long k = 0; k < n; k++) dx[k] = dy[k] * ((real)1 - y[k] * y[k]);          \
}                                                                                  \
TB_CLONES void tb_sigmoid_##SUF(long n, const real *x, real *y)                    \
{                                                                                  \
    for (long k = 0; k < n; k++) y[k] = SIGMOID(x[k]);                             \
}                                                                                  \
TB_CLONES void tb_sigmoid_backward_##SUF(long n, const real *y, const real *dy, real *dx)    \
{                                                                                  \
    for (long k = 0; k < n; k++) dx[k] = dy[k] * y[k] * ((real)1 - y[k]);          \
}                                                                                  \
void tb_relu_##SUF(long n, const real *x, real *y)                                 \
{                                                                                  \
    for (long k = 0; k < n; k++) y[k] = !(x[k] <= 0) ? x[k] : (real)0; /* NaN passes */ \
}                                                                                  \
void tb_relu_backward_##SUF(long n, const real *y, const real *dy, real *dx)       \
{                                                                                  \
    for (long k = 0; k < n; k++) dx[k] = y[k] > 0 ? dy[k] : (real)0;               \
}

DEFINE_ACTIVATIONS(float, f32, vm_tanh_f32, vm_sigmoid_f32)
DEFINE_ACTIVATIONS(double, f64, vm_tanh_f64, vm_sigmoid_f64)
