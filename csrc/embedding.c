/* embedding.c -- the backward pass of an embedding lookup.
 *
 * The forward pass (NumPy, in tinybptt/ops/embedding.py) gathers rows of a
 * table weight (V, E): out[k, :] = weight[ids[k], :] for the n ids, read in C
 * order whatever their shape.  Its gradient with respect to weight sends each
 * row of the incoming gradient back to the row it was read from:
 *
 *     for k = 0 .. n-1:   dweight[ids[k], :] += grad[k, :]
 *
 * An id read several times gathers several rows, added in the order k of the
 * ids: the order of the NumPy reference's np.add.at, so both backends give the
 * same bits.  The Python wrapper (kernels/c_ops.py) has checked that every id
 * lies in [0, V); dweight ACCUMULATES, as weight gradients do (tinybptt.h).
 *
 * Written once for both dtypes in embedding_impl.h; TB_CLONES (runtime.h)
 * compiles it per instruction set, so the row addition vectorises as wide as
 * the CPU allows (each element's sum keeps its order: only different elements
 * share a vector).
 */
#include <stdint.h>
#include "runtime.h"

#define TB_TEMPLATE "embedding_impl.h"
#include "for_each_dtype.h"
