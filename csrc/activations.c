/* activations.c -- tanh, sigmoid, relu and their backward passes.
 *
 * Backward passes read the saved forward OUTPUT y, never the input:
 *   tanh'(x)    = 1 - y*y
 *   sigmoid'(x) = y * (1 - y)
 *   relu'(x)    = (y > 0)
 * sigmoid uses the overflow-free form: for x >= 0, 1/(1+e^-x); for x < 0,
 * e^x/(1+e^x), so exp never sees a large positive argument.
 *
 * vmath.h gives the branch-free, vectorisable tanh and sigmoid.  Each kernel
 * is compiled once per instruction set (TB_CLONES: baseline x86-64,
 * x86-64-v3, x86-64-v4, chosen at load time; TB_CLONES_FMA for tanh and
 * sigmoid, see runtime.h), and written once for both dtypes in
 * activations_impl.h.
 */
#include <math.h>
#include "runtime.h"
#include "vmath.h"

#define TB_TEMPLATE "activations_impl.h"
#include "for_each_dtype.h"
