/* lstm.c -- LSTM cell: one step and a whole sequence,
 * forward and backward, float and double.
 *
 * The algorithm is in lstm_impl.h, written once over `real`; this file
 * instantiates it for both types (see recurrent_common.h).
 */
#include "recurrent_common.h"

#define real float
#define SUF f32
#include "lstm_impl.h"
#undef real
#undef SUF

#define real double
#define SUF f64
#include "lstm_impl.h"
#undef real
#undef SUF
