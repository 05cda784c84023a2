/*
 * vmath.h -- float32 exp, tanh and sigmoid written so that loops over them
 * vectorise (no branches, no libm calls), for the activation kernels and the
 * fused recurrent gate loops.  float64 code keeps libm's exp/tanh: gradient
 * checks and tiny vanishing gradients want every last bit there.
 *
 * Method.  exp(y) = 2^n * exp(r) with n = round(y / ln 2) and r = y - n ln 2,
 * |r| <= ln(2)/2, where ln 2 is split in two parts (Cody-Waite) so that r is
 * computed almost exactly.  exp(r) - 1 is its Taylor polynomial to degree 7:
 * the remainder r^8/8! * e^|r| is below 1e-8, under half an ulp of float.
 * Keeping exp(r) - 1 separate gives expm1 with full relative accuracy near 0,
 * which tanh needs: tanh(a) = -expm1(-2a) / (2 + expm1(-2a)) for a >= 0 has no
 * cancellation for small a and no overflow for large a.  2^n is built from
 * bits as 2^(n/2) * 2^(n - n/2), so results down in the subnormal range
 * (sigmoid(-100) = 3.7e-44) come out right instead of being flushed to zero.
 * NaN inputs give NaN; +-inf and +-1000 give the exact limits.
 */
#ifndef TINYBPTT_VMATH_H
#define TINYBPTT_VMATH_H

#include <stdint.h>

/* 2^k for integer k in [-126, 127], assembled from the exponent bits. */
static inline float vm_pow2i_f32(int32_t k)
{
    union { uint32_t u; float f; } bits = { (uint32_t)(k + 127) << 23 };
    return bits.f;
}

/* exp(y) and exp(y) - 1 together.  y is clamped to [-103.9, 88.7], the range
   where exp(y) is a finite float that is not zero; below it exp(y) is 0. */
static inline void vm_exp_expm1_f32(float y, float *e, float *em1)
{
    const float underflow = y < -103.9f ? 0.0f : 1.0f;
    const float LOG2E = 1.44269504088896341f;
    const float LN2_HI = 0.693145751953125f;      /* ln 2 rounded to 16 bits: n*LN2_HI is exact */
    const float LN2_LO = 1.428606765330187e-06f;  /* ln 2 - LN2_HI */
    y = y < -103.9f ? -103.9f : y;
    y = y > 88.7f ? 88.7f : y;
    const float ROUND = 12582912.0f;              /* 1.5 * 2^23: adding it rounds to an integer */
    float fn = (y * LOG2E + ROUND) - ROUND;       /* round(y / ln 2), branch-free */
    int32_t n = (int32_t)fn;
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
    int32_t n1 = n / 2, n2 = n - n1;
    float s1 = vm_pow2i_f32(n1), s2 = vm_pow2i_f32(n2);
    float scale = s1 * s2;                         /* 2^n */
    *e = (p + 1.0f) * s1 * s2 * underflow;         /* 2^n * exp(r) */
    *em1 = p * scale + (scale - 1.0f);             /* exact p when n == 0 */
}

static inline float vm_exp_f32(float y)
{
    float e, em1;
    vm_exp_expm1_f32(y, &e, &em1);
    return y != y ? y : e;
}

static inline float vm_tanh_f32(float x)
{
    float a = x < 0.0f ? -x : x;
    float e, em1;
    vm_exp_expm1_f32(-2.0f * a, &e, &em1);         /* em1 in (-1, 0] */
    float t = -em1 / (2.0f + em1);
    t = x < 0.0f ? -t : t;
    return x != x ? x : t;
}

static inline float vm_sigmoid_f32(float x)
{
    float a = x < 0.0f ? -x : x;
    float e, em1;
    vm_exp_expm1_f32(-a, &e, &em1);                /* e = exp(-|x|) in (0, 1] never overflows */
    float s = 1.0f / (1.0f + e);
    float r = x >= 0.0f ? s : e * s;
    return x != x ? x : r;
}

/* float64: libm, in the same overflow-free form. */
#include <math.h>

static inline double vm_tanh_f64(double x) { return tanh(x); }

static inline double vm_sigmoid_f64(double x)
{
    if (x >= 0) return 1.0 / (1.0 + exp(-x));
    double e = exp(x);
    return e / (1.0 + e);
}

#endif
