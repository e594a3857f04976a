// Vec8: eight fp32 lanes for the fp16 kernels of the x86-64-v3 build (norms, perturbation, Adam/SGD
// steps), the bf16 Adam/SGD steps and the fp32 ones from a backup (which stream the weights past
// the cache, stream8). The portable loops convert with ~20 integer operations per element (Half16),
// and torch's for-loop Adam, which the steps follow, rounds 7 intermediates per element; here a
// conversion is one F16C instruction for eight lanes. bf16 rounds with five AVX2 integer operations
// on eight lanes (restore + AdamW over 8M bf16 elements, one thread: 15.8 -> 11.4 ms; under
// fused=True's roundings 9.4 -> 7.3). The functions are plain inline with a target: the generic
// element functions they are called from carry none, so only a caller compiled for x86-64-v3 that
// flattens them inlines them (see kernels.cpp). Each is exact as its scalar twin: round to nearest
// even, NaN quieted as Half16, c10's bf16 cast and from_float do it, correctly rounded sqrt, div
// and fma.
#pragma once

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define SLSAM_HAS_VEC8 1

#include <c10/util/BFloat16.h>
#include <immintrin.h>

#include <type_traits>

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
SLSAM_VEC8 Vec8 load8(const float* p) { return {_mm256_loadu_ps(p)}; }
SLSAM_VEC8 void store8(float* p, Vec8 x) { _mm256_storeu_ps(p, x.v); }
// The eight halves' bits, unconverted (a backup is a copy).
SLSAM_VEC8 void copy8(Half16* to, const Half16* from) {
  _mm_storeu_si128(reinterpret_cast<__m128i*>(to),
                   _mm_loadu_si128(reinterpret_cast<const __m128i*>(from)));
}

// bf16 <-> fp32: a bf16 is the top half of an fp32. Rounding is from_float's, lane by lane:
// add 0x7FFF plus the lowest kept bit; the top half of the sum is the rounded value.
SLSAM_VEC8 __m256i bf16_rounded_in_top_halves(Vec8 x) {
  const __m256i u = _mm256_castps_si256(x.v);
  const __m256i lowest_kept = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  return _mm256_add_epi32(u, _mm256_add_epi32(_mm256_set1_epi32(0x7FFF), lowest_kept));
}
// The stored form: NaN becomes 0x7FC0, as from_float makes it.
SLSAM_VEC8 __m256i bf16_bits_in_low_halves(Vec8 x) {
  const __m256i rounded_bits = _mm256_srli_epi32(bf16_rounded_in_top_halves(x), 16);
  const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(x.v, x.v, _CMP_UNORD_Q));
  return _mm256_blendv_epi8(rounded_bits, _mm256_set1_epi32(0x7FC0), nan);
}
SLSAM_VEC8 Vec8 load8(const c10::BFloat16* p) {
  const __m256i bits = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return {_mm256_castsi256_ps(_mm256_slli_epi32(bits, 16))};
}
SLSAM_VEC8 __m128i bf16_packed(Vec8 x) {
  // packus packs within each 128-bit half; the permute puts the two halves' results together
  const __m256i bits = bf16_bits_in_low_halves(x);
  return _mm256_castsi256_si128(_mm256_permute4x64_epi64(_mm256_packus_epi32(bits, bits), 0xD8));
}
SLSAM_VEC8 void store8(c10::BFloat16* p, Vec8 x) {
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), bf16_packed(x));
}

// Non-temporal stores, p aligned to the eight lanes' bytes: they skip the read for ownership
// a plain store makes of each cache line it overwrites; stream_fence() orders them.
SLSAM_VEC8 void stream8(float* p, Vec8 x) { _mm256_stream_ps(p, x.v); }
SLSAM_VEC8 void stream8(Half16* p, Vec8 x) {
  _mm_stream_si128(reinterpret_cast<__m128i*>(p), _mm256_cvtps_ph(x.v, kFp16Rounding));
}
SLSAM_VEC8 void stream8(c10::BFloat16* p, Vec8 x) {
  _mm_stream_si128(reinterpret_cast<__m128i*>(p), bf16_packed(x));
}
SLSAM_VEC8 void stream_fence() { _mm_sfence(); }

// The element functions' rounding to T and back (Half16 or bf16).
template <typename T>
SLSAM_VEC8 Vec8 rounded(Vec8 x) {
  if constexpr (std::is_same_v<T, float>) {
    return x;
  } else if constexpr (std::is_same_v<T, c10::BFloat16>) {
    // An intermediate NaN is left as it is, not made 0x7FC0: the stores do that. Every NaN here
    // has a zero low half (widened from bf16, or made by x86 arithmetic, which quiets an
    // operand's NaN or makes the default one), so the bias cannot carry into its top half and
    // it stays a NaN. With the blend, the for-loop step's eight lanes measured slower than the
    // portable loop (21.0 vs 18.4 ms per 8M, 2026-12-02), without it faster (11.4 vs 15.8).
    const __m256i top_halves = _mm256_set1_epi32(static_cast<int>(0xFFFF0000u));
    return {_mm256_castsi256_ps(_mm256_and_si256(bf16_rounded_in_top_halves(x), top_halves))};
  } else {
    static_assert(std::is_same_v<T, Half16>, "Vec8 rounds to fp16 and bf16 only");
    return {_mm256_cvtph_ps(_mm256_cvtps_ph(x.v, kFp16Rounding))};
  }
}

#undef SLSAM_VEC8

}  // namespace slsam::cpu

#endif
