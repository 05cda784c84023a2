/* activations_impl.h -- the activations written once over `real` (a template:
 * see for_each_dtype.h; instantiated by activations.c). */

TB_CLONES_FMA void FN(tb_tanh)(long n, const real *x, real *y)
{
    for (long k = 0; k < n; k++) y[k] = FN(vm_tanh)(x[k]);
}

TB_CLONES void FN(tb_tanh_backward)(long n, const real *y, const real *dy, real *dx)
{
    for (long k = 0; k < n; k++) dx[k] = dy[k] * ((real)1 - y[k] * y[k]);
}

TB_CLONES_FMA void FN(tb_sigmoid)(long n, const real *x, real *y)
{
    for (long k = 0; k < n; k++) y[k] = FN(vm_sigmoid)(x[k]);
}

TB_CLONES void FN(tb_sigmoid_backward)(long n, const real *y, const real *dy, real *dx)
{
    for (long k = 0; k < n; k++) dx[k] = dy[k] * y[k] * ((real)1 - y[k]);
}

void FN(tb_relu)(long n, const real *x, real *y)
{
    for (long k = 0; k < n; k++) y[k] = !(x[k] <= 0) ? x[k] : (real)0; /* NaN passes */
}

void FN(tb_relu_backward)(long n, const real *y, const real *dy, real *dx)
{
    for (long k = 0; k < n; k++) dx[k] = y[k] <= 0 ? (real)0 : dy[k]; /* at y = NaN dy passes */
}
