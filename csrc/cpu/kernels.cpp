// The block kernels, each compiled twice by GCC/Clang function multi-versioning: for x86-64-v3
// (AVX2, FMA) and for the baseline, picked once at load time by the CPU. AVX2 measured on
// this project's 2-core EPYC: bf16 grad_sqnorms 2.5 -> 1.9 ms per 25M elements, and the
// Adam step's sqrt/div only vectorise with it. -ffp-contract=off keeps FMA out of both.
#include "kernels.h"

#include <algorithm>
#include <cstdint>

#include <c10/util/bit_cast.h>

#if defined(__x86_64__) && defined(__linux__) && (defined(__GNUC__) || defined(__clang__))
#define SLSAM_MULTIVERSIONED __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define SLSAM_MULTIVERSIONED
#endif

namespace slsam::cpu {
namespace {

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

template <typename T>
struct Compute {
  using type = T;
};
template <>
struct Compute<c10::Half> {
  using type = Half16;
};
template <typename T>
using compute_t = typename Compute<T>::type;

template <typename T>
inline compute_t<T>* as_compute(T* p) {
  return reinterpret_cast<compute_t<T>*>(p);
}
template <typename T>
inline const compute_t<T>* as_compute(const T* p) {
  return reinterpret_cast<const compute_t<T>*>(p);
}

// Element i of a block goes to accumulator i % 16, in order, and the 16 are added pairwise:
// a fixed order, the same in every clone. Products are staged in a 256-float tile so both
// loops vectorise for bf16 too (converting in the accumulating loop kept it scalar).
constexpr int kLanes = 16;
constexpr int kTile = 256;

template <typename T, bool kWeighted>
__attribute__((always_inline)) inline float sqnorm(const T* __restrict__ g,
                                                   const T* __restrict__ w, int64_t n) {
  float acc[kLanes] = {};
  float tile[kTile];
  for (int64_t start = 0; start < n; start += kTile) {
    const int count = static_cast<int>(std::min<int64_t>(kTile, n - start));
    for (int j = 0; j < count; ++j) {
      float x = static_cast<float>(g[start + j]);
      if constexpr (kWeighted) {
        x *= static_cast<float>(w[start + j]);
      }
      tile[j] = x * x;
    }
    if (count == kTile) {
      for (int j = 0; j < kTile; j += kLanes) {
        for (int l = 0; l < kLanes; ++l) {
          acc[l] += tile[j + l];
        }
      }
    } else {
      for (int j = 0; j < count; ++j) {
        acc[j % kLanes] += tile[j];
      }
    }
  }
  for (int width = kLanes / 2; width > 0; width /= 2) {
    for (int l = 0; l < width; ++l) {
      acc[l] += acc[l + width];
    }
  }
  return acc[0];
}

template <typename T, bool kAdaptive>
__attribute__((always_inline)) inline void perturb(T* __restrict__ w, const T* __restrict__ g,
                                                   T* __restrict__ backup, int64_t n,
                                                   float scale) {
  for (int64_t i = 0; i < n; ++i) {
    const T old = w[i];
    backup[i] = old;
    w[i] = from_float<T>(
        perturbed(static_cast<float>(old), static_cast<float>(g[i]), scale, kAdaptive));
  }
}

// The scalars come by value and each loop sits in a function with __restrict__ parameters:
// through a reference the compiler must assume they alias the outputs and the bf16 loops stay
// scalar. The flag lambdas are always_inline: target_clones clones only the functions it
// marks, so a lambda left out of line would run baseline code.
#define SLSAM_INLINE_LAMBDA __attribute__((always_inline))

// kInPlace: the step starts from w itself (BAR's rescaled step; the caller passed w as its
// backup), read through w: a restrict-qualified backup aliasing w would be undefined.
template <typename T, bool kL2, bool kSmallLerpWeight, bool kInPlace>
__attribute__((always_inline)) inline void adam(T* __restrict__ w, const T* __restrict__ g,
                                                const T* __restrict__ backup,
                                                T* __restrict__ m, T* __restrict__ v,
                                                int64_t n, const AdamScalars s) {
  for (int64_t i = 0; i < n; ++i) {
    w[i] = from_float<T>(adam_element<T, kL2, kSmallLerpWeight>(
        static_cast<float>(kInPlace ? w[i] : backup[i]), static_cast<float>(g[i]), m[i], v[i],
        s));
  }
}

template <typename T, bool kWeightDecay, bool kMomentum, bool kFirstStep, bool kNesterov,
          bool kInPlace>
__attribute__((always_inline)) inline void sgd(T* __restrict__ w, const T* __restrict__ g,
                                               const T* __restrict__ backup,
                                               T* __restrict__ buffer, int64_t n,
                                               const SgdScalars s) {
  for (int64_t i = 0; i < n; ++i) {
    w[i] = from_float<T>(sgd_element<T, kWeightDecay, kMomentum, kFirstStep, kNesterov>(
        static_cast<float>(kInPlace ? w[i] : backup[i]), static_cast<float>(g[i]),
        kMomentum ? buffer + i : nullptr, s));
  }
}

}  // namespace

#define SLSAM_DEFINE_BLOCK_KERNELS(T)                                                          \
  SLSAM_MULTIVERSIONED float sqnorm_block(const T* g, int64_t n) {                             \
    return sqnorm<compute_t<T>, false>(as_compute(g), nullptr, n);                             \
  }                                                                                            \
  SLSAM_MULTIVERSIONED float weighted_sqnorm_block(const T* g, const T* w, int64_t n) {        \
    return sqnorm<compute_t<T>, true>(as_compute(g), as_compute(w), n);                        \
  }                                                                                            \
  SLSAM_MULTIVERSIONED void perturb_block(T* w, const T* g, T* backup, int64_t n,              \
                                          float scale, bool adaptive) {                        \
    if (adaptive) {                                                                            \
      perturb<compute_t<T>, true>(as_compute(w), as_compute(g), as_compute(backup), n, scale); \
    } else {                                                                                   \
      perturb<compute_t<T>, false>(as_compute(w), as_compute(g), as_compute(backup), n,        \
                                   scale);                                                     \
    }                                                                                          \
  }                                                                                            \
  SLSAM_MULTIVERSIONED void adam_block(T* w, const T* g, const T* backup, T* exp_avg,          \
                                       T* exp_avg_sq, int64_t n, const AdamScalars& s) {       \
    with_adam_flags(                                                                           \
        s,                                                                                     \
        [&]<bool kL2, bool kSmall, bool kInPlace>() SLSAM_INLINE_LAMBDA {                      \
          adam<compute_t<T>, kL2, kSmall, kInPlace>(                                           \
              as_compute(w), as_compute(g), kInPlace ? nullptr : as_compute(backup),           \
              as_compute(exp_avg), as_compute(exp_avg_sq), n, s);                              \
        },                                                                                     \
        backup == w);                                                                          \
  }                                                                                            \
  SLSAM_MULTIVERSIONED void sgd_block(T* w, const T* g, const T* backup, T* momentum_buffer,   \
                                      int64_t n, const SgdScalars& s) {                        \
    with_sgd_flags(                                                                            \
        s, momentum_buffer != nullptr,                                                         \
        [&]<bool kDecay, bool kMomentum, bool kFirst, bool kNesterov, bool kInPlace>()         \
            SLSAM_INLINE_LAMBDA {                                                              \
              sgd<compute_t<T>, kDecay, kMomentum, kFirst, kNesterov, kInPlace>(               \
                  as_compute(w), as_compute(g), kInPlace ? nullptr : as_compute(backup),       \
                  as_compute(momentum_buffer), n, s);                                          \
            },                                                                                 \
        backup == w);                                                                          \
  }

SLSAM_DEFINE_BLOCK_KERNELS(float)
SLSAM_DEFINE_BLOCK_KERNELS(double)
SLSAM_DEFINE_BLOCK_KERNELS(c10::BFloat16)
SLSAM_DEFINE_BLOCK_KERNELS(c10::Half)

#undef SLSAM_DEFINE_BLOCK_KERNELS

}  // namespace slsam::cpu
