// fp16 for the CPU kernels: Half16, a portable view of c10::Half's bits whose conversions
// vectorise (the eight-lane steps convert through F16C instead: vec8.h).
#pragma once

#include <cstdint>

#include <c10/util/Half.h>
#include <c10/util/bit_cast.h>

namespace slsam::cpu {

// IEEE binary16 <-> fp32 in integer and fp32 operations only, without branches, so that the
// fp16 loops vectorise in the x86-64-v3 clone. Through the compiler's _Float16, GCC 12 kept
// them scalar: one xmm F16C conversion per element (objdump of the AVX2 clone of the fp16
// Adam step: 92 vcvtph2ps, none on ymm), and c10::Half's own conversion branches. Both
// directions are exact as IEEE and c10 define them: round to nearest even, subnormals kept,
// overflow to inf, NaN quieted with its payload's top bits and sign (as torch's CPU cast).
__attribute__((always_inline)) inline uint16_t half_bits_from_float(float f) {
  constexpr uint32_t kInfinity = 255u << 23;
  constexpr uint32_t kOverflow = (127u + 16u) << 23;  // 65536: at or above it, inf (or NaN)
  constexpr uint32_t kSmallestNormal = 113u << 23;  // 2^-14
  constexpr uint32_t kSubnormalMagic = 126u << 23;  // 0.5: its ulp is fp16's subnormal step
  uint32_t x = c10::bit_cast<uint32_t>(f);
  const uint32_t sign = x & 0x80000000u;
  x ^= sign;
  // normal: rebias the exponent, round the 13 dropped bits to nearest even
  constexpr uint32_t kRebias = static_cast<uint32_t>(15 - 127) << 23;
  const uint32_t normal = (x + kRebias + 0xFFFu + ((x >> 13) & 1u)) >> 13;
  // subnormal: the fp32 addition rounds x to a multiple of 2^-24, as fp16 does
  const float aligned = c10::bit_cast<float>(x) + c10::bit_cast<float>(kSubnormalMagic);
  const uint32_t subnormal = c10::bit_cast<uint32_t>(aligned) - kSubnormalMagic;
  // every case computed, one picked by masks: a select on them would be a branch GCC keeps
  const uint32_t is_nan = 0u - static_cast<uint32_t>(x > kInfinity);
  const uint32_t special = 0x7C00u | (is_nan & (0x0200u | ((x >> 13) & 0x03FFu)));
  const uint32_t is_subnormal = 0u - static_cast<uint32_t>(x < kSmallestNormal);
  const uint32_t is_special = 0u - static_cast<uint32_t>(x >= kOverflow);
  const uint32_t finite = (subnormal & is_subnormal) | (normal & ~is_subnormal);
  const uint32_t out = (special & is_special) | (finite & ~is_special);
  return static_cast<uint16_t>(out | (sign >> 16));
}

__attribute__((always_inline)) inline float half_bits_to_float(uint16_t h) {
  constexpr uint32_t kExponent = 0x7C00u << 13;
  constexpr float kSmallestNormal = 6.103515625e-05f;  // 2^-14
  uint32_t bits = (static_cast<uint32_t>(h) & 0x7FFFu) << 13;
  const uint32_t exponent = bits & kExponent;
  bits += (127u - 15u) << 23;
  const uint32_t special = bits + ((128u - 16u) << 23);  // inf and NaN (payload kept)
  const uint32_t subnormal =
      c10::bit_cast<uint32_t>(c10::bit_cast<float>(bits + (1u << 23)) - kSmallestNormal);
  const uint32_t is_special = 0u - static_cast<uint32_t>(exponent == kExponent);
  const uint32_t is_subnormal = 0u - static_cast<uint32_t>(exponent == 0);
  const uint32_t normal = bits & ~(is_special | is_subnormal);
  bits = (special & is_special) | (subnormal & is_subnormal) | normal;
  return c10::bit_cast<float>(bits | ((static_cast<uint32_t>(h) & 0x8000u) << 16));
}

// c10::Half's bits, converted by the two functions above. The kernels view c10::Half buffers
// through it (as they did through _Float16): each kernel reads and writes a buffer through
// one type only. may_alias would be the strict fix, but GCC then finds no vector type for it.
struct Half16 {
  uint16_t bits;
  Half16() = default;
  __attribute__((always_inline)) explicit Half16(float f) : bits(half_bits_from_float(f)) {}
  __attribute__((always_inline)) explicit operator float() const {
    return half_bits_to_float(bits);
  }
};
static_assert(sizeof(Half16) == sizeof(c10::Half));

}  // namespace slsam::cpu
