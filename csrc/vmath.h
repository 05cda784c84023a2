/*
 * vmath.h -- float32 tanh and sigmoid written so that loops over them
 * vectorise (no branches, no libm calls), for the activation kernels and the
 * fused recurrent gate loops; float64 versions of the same at the end.
 *
 * Method.  Both need exp(y) only for y <= 0: sigmoid(x) from exp(-|x|), tanh
 * from exp(-2|x|).  exp(y) = 2^n * exp(r) with n = round(y / ln 2) and
 * r = y - n ln 2, |r| <= ln(2)/2, where ln 2 is split in two parts
 * (Cody-Waite) so that r is computed almost exactly.  exp(r) - 1 is its
 * Taylor polynomial to degree 7: the remainder r^8/8! * e^|r| is below 1e-8,
 * under half an ulp of float.  Keeping exp(r) - 1 separate gives expm1 with
 * full relative accuracy near 0, which tanh needs:
 * tanh(a) = -expm1(-2a) / (2 + expm1(-2a)) for a >= 0 has no cancellation for
 * small a and no overflow for large a.  2^n comes from the bits of the sum
 * that rounds y / ln 2 to n; sigmoid takes it as 2^(n + 64) * 2^-64, so that
 * results down in the subnormal range (sigmoid(-100) = 3.7e-44) come out
 * right instead of being flushed to zero.
 * Both come out within 3 ulps (tests/test_vmath.py measures it).
 *
 * Tried and not kept: exp(r) - 1 to degree 6 with fitted coefficients
 * (largest relative error 1.4e-8), and sigmoid without |x| and the final
 * select, as 2^-30 / (2^-30 + exp(-x) * 2^-30) with -x clamped to [-18, 104]
 * (the factor 2^-30 keeps 2^n a normal number).  Together they made the
 * LSTM's float32 sequence forward (T = 100, B = 32, I = 2, H = 64, one Zen 4
 * core) 2% faster, and sigmoid's largest error where its result is a tiny
 * normal number (-87 < x < -80) grew from 0.88 ulps to 1.54 (1.09 with the
 * shorter polynomial in the present sigmoid), past the one ulp that
 * tests/test_lstmk.py allows there.
 *
 * Every step is plain arithmetic or a select the compiler turns into a
 * vector blend, min or max: |x| and the sign come from fabs and copysign
 * (bit operations), and a NaN input needs no test of its own -- the clamps
 * below keep it, and it goes through the arithmetic as a NaN.  +-inf and
 * +-1000 give the exact limits.
 */
#ifndef TINYBPTT_VMATH_H
#define TINYBPTT_VMATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

/* exp(y) = 2^n * (1 + p) for y <= 0 (or NaN) with n = round(y / ln 2) in
   [-126 - k, 127 - k] (the callers clamp y): returns p = exp(r) - 1 and sets
   *s = 2^(n + k), a normal number, for a constant k (the caller's offset).
   The bits of 2^(n + k) come free with the rounding: adding 1.5 * 2^23 + 127 + k
   to y / ln 2 leaves n + 127 + k, the biased exponent of 2^(n + k), in the low
   bits of the sum, and a shift by the mantissa's 23 bits puts it in place. */
static inline float vm_exp_parts_f32(float y, float k, float *s)
{
    const float LOG2E = 1.44269504088896341f;
    const float LN2_HI = 0.693145751953125f;      /* ln 2 rounded to 16 bits: n*LN2_HI is exact */
    const float LN2_LO = 1.428606765330187e-06f;  /* ln 2 - LN2_HI */
    const float SHIFT = 12582912.0f + 127.0f + k; /* 1.5 * 2^23 (adding it rounds to an integer) + bias */
    float fs = y * LOG2E + SHIFT;                 /* round(y / ln 2) + SHIFT, branch-free */
    float fn = fs - SHIFT;                        /* n */
    float r = (y - fn * LN2_HI) - fn * LN2_LO;
    /* p = exp(r) - 1 = r + r^2/2! + ... + r^7/7!  (Horner) */
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r;
    uint32_t bits;
    memcpy(&bits, &fs, sizeof bits);
    bits <<= 23;                                  /* n + 127 + k in the exponent field, sign 0 */
    memcpy(s, &bits, sizeof bits);                /* (NaN y: any bits; p is NaN and so is the result) */
    return p;
}

static inline float vm_tanh_f32(float x)
{
    float y = -2.0f * fabsf(x), s;
    y = y < -87.0f ? -87.0f : y;                   /* n >= -126; tanh(43.5) rounds to 1 (a NaN stays NaN) */
    float p = vm_exp_parts_f32(y, 0.0f, &s);       /* s = 2^n */
    float em1 = p * s + (s - 1.0f);                /* expm1(y) in [-1, 0], exactly p when n == 0 */
    return copysignf(em1 / (2.0f + em1), x);       /* |tanh(x)| = -em1 / (2 + em1) */
}

static inline float vm_sigmoid_f32(float x)
{
    float y = -fabsf(x), s;
    /* y >= -104, so n >= -150: exp(-104) = 6.8e-46 is below half the smallest
       subnormal (2^-150), so the clamped value rounds to 0 as every smaller y
       should.  2^n itself may then be no float, so the scaling goes through
       2^(n + 64), and (1 + p) * 2^(n + 64) * 2^-64 rounds once, at the end:
       results down in the subnormal range (sigmoid(-100) = 3.7e-44) come out
       right instead of being flushed to zero. */
    y = y < -104.0f ? -104.0f : y;                 /* (a NaN stays NaN) */
    float p = vm_exp_parts_f32(y, 64.0f, &s);      /* s = 2^(n + 64) */
    float e = (p + 1.0f) * s * 0x1p-64f;           /* exp(-|x|) in [0, 1]: never overflows */
    float q = 1.0f / (1.0f + e);                   /* sigmoid(|x|) */
    return x < 0.0f ? e * q : q;                   /* sigmoid(-a) = exp(-a) * sigmoid(a) */
}

/* float64: the same method, branch-free so that the gate loops vectorise (libm's
 * exp and tanh are calls, one element at a time, and made the float64 forward pass
 * of a recurrent layer several times slower than its backward pass).
 *
 * Accuracy.  |r| <= ln(2)/2 after the Cody-Waite reduction (ln 2 split into a
 * 32-bit head, so n * LN2_HI is exact, and a tail); exp(r) - 1 is its Taylor
 * polynomial to degree 13, whose remainder r^14/14! < 5e-18 is far below half an
 * ulp of exp(r) - 1 for every r in range, so exp and expm1 come out within about
 * an ulp, and tanh and sigmoid (one more division) within a few: 1e-15 relative,
 * 1000 times tighter than anything gradient checks resolve.  2^n is assembled from
 * bits as 2^(n - n/2) * 2^(n/2), so results deep in the subnormal range
 * (sigmoid(-740) = 4e-322) come out right.  Integer n is taken from the bits of
 * the rounded double (y / ln 2 + 1.5 * 2^52), not by a double -> int64
 * conversion, which AVX2 and plain AVX-512F have no vector instruction for.
 * NaN inputs give NaN; +-inf and +-1000 give the exact limits. */

typedef union { double d; int64_t i; } vm_bits_f64;

/* 2^k for an integer-valued double k in [-1022, 1023] (k + SHIFT's bits hold k). */
static inline double vm_pow2_f64(double k)
{
    const double SHIFT = 6755399441055744.0;  /* 1.5 * 2^52: adding it puts an integer in the low bits */
    vm_bits_f64 a = { k + SHIFT }, b = { SHIFT }, r;
    r.i = (a.i - b.i + 1023) << 52;
    return r.d;
}

/* exp(y) and exp(y) - 1 together, for y <= 0 (or NaN).  y is clamped at -746:
   exp(-746) is below half the smallest subnormal (2^-1075), so the clamped
   value rounds to exp(y) = 0 as every smaller y should. */
static inline void vm_exp_expm1_f64(double y, double *e, double *em1)
{
    const double LOG2E = 1.4426950408889634074;
    const double LN2_HI = 6.93147180369123816490e-01;  /* 32 significant bits: n * LN2_HI is exact */
    const double LN2_LO = 1.90821492927058770002e-10;  /* ln 2 - LN2_HI */
    const double SHIFT = 6755399441055744.0;           /* 1.5 * 2^52 */
    y = y < -746.0 ? -746.0 : y;                         /* (a NaN stays NaN) */
    double fn = (y * LOG2E + SHIFT) - SHIFT;             /* round(y / ln 2), branch-free */
    double r = (y - fn * LN2_HI) - fn * LN2_LO;
    /* p = exp(r) - 1 = r + r^2/2! + ... + r^13/13!  (Horner) */
    double p = 1.0 / 6227020800.0;
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r;
    double f1 = (fn * 0.5 + SHIFT) - SHIFT;             /* n/2 (rounded), so each factor stays normal */
    double s1 = vm_pow2_f64(f1), s2 = vm_pow2_f64(fn - f1);
    double scale = s1 * s2;                             /* 2^n (0 below -1074: only e needs those) */
    *e = (p + 1.0) * s1 * s2;                           /* 2^n * exp(r) */
    *em1 = p * scale + (scale - 1.0);                   /* exact p when n == 0 */
}

static inline double vm_tanh_f64(double x)
{
    double a = fabs(x);
    a = a > 20.0 ? 20.0 : a;                            /* tanh(20) rounds to 1 (a NaN stays NaN) */
    double e, em1;
    vm_exp_expm1_f64(-2.0 * a, &e, &em1);              /* em1 in (-1, 0] */
    return copysign(em1 / (2.0 + em1), x);              /* |tanh(x)| = -em1 / (2 + em1) */
}

static inline double vm_sigmoid_f64(double x)
{
    double e, em1;
    vm_exp_expm1_f64(-fabs(x), &e, &em1);              /* e = exp(-|x|) in [0, 1] never overflows */
    double s = 1.0 / (1.0 + e);                         /* sigmoid(|x|) */
    return x < 0.0 ? e * s : s;                         /* sigmoid(-a) = exp(-a) * sigmoid(a) */
}

#endif
