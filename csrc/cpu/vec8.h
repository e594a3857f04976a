// Vec8: eight fp32 lanes for the fp16 kernels of the x86-64-v3 build (norms, perturbation,
// Adam/SGD steps). The portable loops convert with ~20 integer operations per element
// (Half16), and torch's for-loop Adam, which the steps follow, rounds 7 intermediates per
// element; here a conversion is one F16C instruction for eight lanes. (bf16 gains nothing from this
// form: the same loops in eight AVX2 lanes measured 19.7 ms against the portable clone's 20.0 ms,
// 8M elements.) The functions are plain inline with a target: the generic element functions they
// are called from carry none, so only a caller compiled for x86-64-v3 that flattens them inlines
// them (see kernels.cpp). Each is exact as its scalar twin: round to nearest even, NaN quieted with
// its payload's top bits (as Half16 and torch's CPU cast), correctly rounded sqrt, div and fma.
#pragma once

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define SLSAM_HAS_VEC8 1

#include <type_traits>

#include <immintrin.h>

#include "half.h"

namespace slsam::cpu {

#define SLSAM_VEC8 __attribute__((target("avx2,fma,f16c"))) inline

struct Vec8 {
  __m256 v;
};

SLSAM_VEC8 Vec8 broadcast(float x) { return {_mm256_set1_ps(x)}; }
SLSAM_VEC8 Vec8 operator+(Vec8 a, Vec8 b) { return {_mm256_add_ps(a.v, b.v)}; }
SLSAM_VEC8 Vec8 operator+(Vec8 a, float b) { return a + broadcast(b); }
SLSAM_VEC8 Vec8 operator-(Vec8 a, Vec8 b) { return {_mm256_sub_ps(a.v, b.v)}; }
SLSAM_VEC8 Vec8 operator*(Vec8 a, Vec8 b) { return {_mm256_mul_ps(a.v, b.v)}; }
SLSAM_VEC8 Vec8 operator*(Vec8 a, float b) { return a * broadcast(b); }
SLSAM_VEC8 Vec8 operator*(float a, Vec8 b) { return broadcast(a) * b; }
SLSAM_VEC8 Vec8 operator/(Vec8 a, Vec8 b) { return {_mm256_div_ps(a.v, b.v)}; }
SLSAM_VEC8 Vec8 operator/(Vec8 a, float b) { return a / broadcast(b); }
SLSAM_VEC8 Vec8 fused_multiply_add(Vec8 a, Vec8 b, Vec8 c) {
  return {_mm256_fmadd_ps(a.v, b.v, c.v)};
}
SLSAM_VEC8 Vec8 add_scaled(Vec8 a, float alpha, Vec8 b) {
  return fused_multiply_add(broadcast(alpha), b, a);
}
SLSAM_VEC8 Vec8 square_root(Vec8 x) { return {_mm256_sqrt_ps(x.v)}; }

constexpr int kFp16Rounding = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;

SLSAM_VEC8 Vec8 load8(const Half16* p) {
  return {_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)))};
}
SLSAM_VEC8 void store8(Half16* p, Vec8 x) {
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_cvtps_ph(x.v, kFp16Rounding));
}
SLSAM_VEC8 void store8(float* p, Vec8 x) { _mm256_storeu_ps(p, x.v); }
// The eight halves' bits, unconverted (a backup is a copy).
SLSAM_VEC8 void copy8(Half16* to, const Half16* from) {
  _mm_storeu_si128(reinterpret_cast<__m128i*>(to),
                   _mm_loadu_si128(reinterpret_cast<const __m128i*>(from)));
}

// The element functions' rounding to fp16 and back (T is Half16: the fp16 steps only).
template <typename T>
SLSAM_VEC8 Vec8 rounded(Vec8 x) {
  static_assert(std::is_same_v<T, Half16>, "Vec8 rounds to fp16 only");
  return {_mm256_cvtph_ps(_mm256_cvtps_ph(x.v, kFp16Rounding))};
}

#undef SLSAM_VEC8

}  // namespace slsam::cpu

#endif
