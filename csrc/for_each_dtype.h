/* for_each_dtype.h -- how csrc writes code once for float and double.
 *
 * A template is a header written over the type `real`, in which FN(name)
 * spells name_f32 or name_f64 (and SUF is f32 or f64); `ubits` is the
 * unsigned integer type of the same size, for code that reads a real's bits.  A file that wants
 * both instances names the template and includes this file:
 *
 *     #define TB_TEMPLATE "lstm_impl.h"
 *     #include "for_each_dtype.h"      -> tb_lstm_seq_forward_f32, ..._f64, ...
 *
 * Templates have no include guard on purpose: they are read once per dtype.
 * csrc/build_ffi.py does the same substitution in text for the typed half
 * of the public header (tinybptt_typed.h), which cffi reads.
 */
#ifndef TB_FN_DEFINED
#define TB_FN_DEFINED
#include <stdint.h>
#define TB_CAT2(a, b) a##_##b
#define TB_CAT(a, b) TB_CAT2(a, b)
#define FN(name) TB_CAT(name, SUF)   /* FN(tb_gemm) -> tb_gemm_f32 when SUF is f32 */
#endif

#define real float
#define ubits uint32_t
#define SUF f32
#include TB_TEMPLATE
#undef real
#undef ubits
#undef SUF

#define real double
#define ubits uint64_t
#define SUF f64
#include TB_TEMPLATE
#undef real
#undef ubits
#undef SUF

#undef TB_TEMPLATE
