/* activations.c -- tanh, sigmoid, relu and their backward passes.
 *
 * Backward passes read the saved forward OUTPUT y, never the input:
 *   tanh'(x)    = 1 - y*y
 *   sigmoid'(x) = y * (1 - y)
 *   relu'(x)    = (y > 0)
 * sigmoid uses the overflow-free form: for x >= 0, 1/(1+e^-x); for x < 0,
 * e^x/(1+e^x), so exp never sees a large positive argument.
 */
#include <math.h>
#include "tinybptt.h"

#define DEFINE_ACTIVATIONS(real, SUF, TANH, EXP)                                   \
void tb_tanh_##SUF(long n, const real *x, real *y)                                 \
{                                                                                  \
    for (long k = 0; k < n; k++) y[k] = TANH(x[k]);                                \
}                                                                                  \
void tb_tanh_backward_##SUF(long n, const real *y, const real *dy, real *dx)       \
{                                                                                  \
    for (long k = 0; k < n; k++) dx[k] = dy[k] * ((real)1 - y[k] * y[k]);          \
}                                                                                  \
void tb_sigmoid_##SUF(long n, const real *x, real *y)                              \
{                                                                                  \
    for (long k = 0; k < n; k++) {                                                 \
        real v = x[k];                                                             \
        if (v >= 0) { y[k] = (real)1 / ((real)1 + EXP(-v)); }                      \
        else        { real e = EXP(v); y[k] = e / ((real)1 + e); }                 \
    }                                                                              \
}                                                                                  \
void tb_sigmoid_backward_##SUF(long n, const real *y, const real *dy, real *dx)    \
{                                                                                  \
    for (long k = 0; k < n; k++) dx[k] = dy[k] * y[k] * ((real)1 - y[k]);          \
}                                                                                  \
void tb_relu_##SUF(long n, const real *x, real *y)                                 \
{                                                                                  \
    for (long k = 0; k < n; k++) y[k] = x[k] > 0 ? x[k] : (x[k] != x[k] ? x[k] : (real)0); \
}                                                                                  \
void tb_relu_backward_##SUF(long n, const real *y, const real *dy, real *dx)       \
{                                                                                  \
    for (long k = 0; k < n; k++) dx[k] = y[k] > 0 ? dy[k] : (real)0;               \
}

DEFINE_ACTIVATIONS(float, f32, tanhf, expf)
DEFINE_ACTIVATIONS(double, f64, tanh, exp)
