/* gru.c -- GRU cell: one step and a whole sequence,
 * forward and backward, float and double.
 *
 * The algorithm is in gru_impl.h, written once over `real`; this file
 * instantiates it for float and double (see for_each_dtype.h).
 */
#include "recurrent_common.h"

#define TB_TEMPLATE "gru_impl.h"
#include "for_each_dtype.h"
