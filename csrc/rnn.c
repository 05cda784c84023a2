/* rnn.c -- Elman RNN cell (tanh or relu): one step and a whole sequence,
 * forward and backward, float and double.
 *
 * The algorithm is in rnn_impl.h, written once over `real`; this file
 * instantiates it for both types (see recurrent_common.h).
 */
#include "recurrent_common.h"

#define real float
#define SUF f32
#include "rnn_impl.h"
#undef real
#undef SUF

#define real double
#define SUF f64
#include "rnn_impl.h"
#undef real
#undef SUF
