/* rnn.c -- Elman RNN cell (tanh or relu): one step and a whole sequence,
 * forward and backward, float and double.
 *
 * The algorithm is in rnn_impl.h, written once over `real`; this file
 * instantiates it for float and double (see for_each_dtype.h).
 */
#include "recurrent_common.h"

#define TB_TEMPLATE "rnn_impl.h"
#include "for_each_dtype.h"
