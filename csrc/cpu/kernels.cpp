// The block kernels, each compiled twice by GCC/Clang function multi-versioning: for x86-64-v3
// (AVX2, F16C) and for the baseline, picked once at load time by the CPU. AVX2 measured on
// this project's 2-core EPYC: bf16 grad_sqnorms 2.5 -> 1.9 ms per 25M elements, and the
// Adam step's sqrt/div only vectorise with it. -ffp-contract=off keeps FMA out of both.
#include "kernels.h"

#include <algorithm>

#if defined(__x86_64__) && defined(__linux__) && (defined(__GNUC__) || defined(__clang__))
#define SLSAM_MULTIVERSIONED __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define SLSAM_MULTIVERSIONED
#endif

namespace slsam::cpu {
namespace {

// fp16 is computed through the compiler's _Float16, which has c10::Half's bits (IEEE binary16):
// in the x86-64-v3 clone its conversions are F16C instructions the loops vectorise, where
// c10::Half's portable bit-twiddling conversion kept every fp16 loop scalar (restore + AdamW
// on ViT-B/16 fp16 measured 23x slower than torch's for-loop step). Both round to nearest even.
template <typename T>
struct Compute {
  using type = T;
};
#if defined(__FLT16_MAX__)
template <>
struct Compute<c10::Half> {
  using type = _Float16;
};
#endif
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
