// The block kernels, each compiled twice by GCC/Clang function multi-versioning: for x86-64-v3
// (AVX2, F16C) and for the baseline, picked once at load time by the CPU. AVX2 measured on
// this project's 2-core EPYC: bf16 grad_sqnorms 2.5 -> 1.9 ms per 25M elements, and the
// Adam step's sqrt/div only vectorise with it. -ffp-contract=off keeps FMA out of both.
#include "kernels.h"

#if defined(__x86_64__) && defined(__linux__) && (defined(__GNUC__) || defined(__clang__))
#define SLSAM_MULTIVERSIONED __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define SLSAM_MULTIVERSIONED
#endif

namespace slsam::cpu {
namespace {

// 16 independent fp32 accumulators: they live in vector registers, and summing lane-wise is a
// reordering nobody has to license with -ffast-math.
constexpr int kLanes = 16;

template <typename T, bool kWeighted>
__attribute__((always_inline)) inline float sqnorm(const T* __restrict__ g,
                                                   const T* __restrict__ w, int64_t n) {
  float acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) {
      float x = static_cast<float>(g[i + l]);
      if constexpr (kWeighted) {
        x *= static_cast<float>(w[i + l]);
      }
      acc[l] += x * x;
    }
  }
  for (int l = 0; i < n; ++i, ++l) {
    float x = static_cast<float>(g[i]);
    if constexpr (kWeighted) {
      x *= static_cast<float>(w[i]);
    }
    acc[l] += x * x;
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

// The scalars come by value and the loop sits in its own function with __restrict__
// parameters: through a reference, or a lambda's captures, the compiler must assume they alias
// the outputs, and the bf16 loop stays scalar.
template <typename T, bool kL2, bool kSmallLerpWeight>
__attribute__((always_inline)) inline void adam(T* __restrict__ w, const T* __restrict__ g,
                                                const T* __restrict__ backup,
                                                T* __restrict__ m, T* __restrict__ v,
                                                int64_t n, const AdamScalars s) {
  for (int64_t i = 0; i < n; ++i) {
    w[i] = from_float<T>(adam_element<T, kL2, kSmallLerpWeight>(
        static_cast<float>(backup[i]), static_cast<float>(g[i]), m[i], v[i], s));
  }
}

// Picks adam<> for the scalars' flags. No lambda (with_adam_flags): a lambda's body is a
// function of its own, and target_clones does not clone it.
template <typename T>
__attribute__((always_inline)) inline void adam_with_flags(T* w, const T* g, const T* backup,
                                                           T* m, T* v, int64_t n,
                                                           const AdamScalars s) {
  const bool small_weight = s.lerp_weight > -0.5f && s.lerp_weight < 0.5f;
  if (s.l2 != 0.0f) {
    small_weight ? adam<T, true, true>(w, g, backup, m, v, n, s)
                 : adam<T, true, false>(w, g, backup, m, v, n, s);
  } else {
    small_weight ? adam<T, false, true>(w, g, backup, m, v, n, s)
                 : adam<T, false, false>(w, g, backup, m, v, n, s);
  }
}

template <typename T>
__attribute__((always_inline)) inline void sgd(T* __restrict__ w, const T* __restrict__ g,
                                               const T* __restrict__ backup,
                                               T* __restrict__ buffer, int64_t n,
                                               const SgdScalars s) {
  if (buffer == nullptr) {
    for (int64_t i = 0; i < n; ++i) {
      w[i] = from_float<T>(
          sgd_element<T>(static_cast<float>(backup[i]), static_cast<float>(g[i]), nullptr, s));
    }
  } else {
    for (int64_t i = 0; i < n; ++i) {
      w[i] = from_float<T>(sgd_element<T>(static_cast<float>(backup[i]),
                                           static_cast<float>(g[i]), buffer + i, s));
    }
  }
}

}  // namespace

#define SLSAM_DEFINE_BLOCK_KERNELS(T)                                                        \
  SLSAM_MULTIVERSIONED float sqnorm_block(const T* g, int64_t n) {                           \
    return sqnorm<T, false>(g, nullptr, n);                                                  \
  }                                                                                          \
  SLSAM_MULTIVERSIONED float weighted_sqnorm_block(const T* g, const T* w, int64_t n) {      \
    return sqnorm<T, true>(g, w, n);                                                         \
  }                                                                                          \
  SLSAM_MULTIVERSIONED void perturb_block(T* w, const T* g, T* backup, int64_t n,            \
                                          float scale, bool adaptive) {                      \
    if (adaptive) {                                                                          \
      perturb<T, true>(w, g, backup, n, scale);                                              \
    } else {                                                                                 \
      perturb<T, false>(w, g, backup, n, scale);                                             \
    }                                                                                        \
  }                                                                                          \
  SLSAM_MULTIVERSIONED void adam_block(T* w, const T* g, const T* backup, T* exp_avg,        \
                                       T* exp_avg_sq, int64_t n, const AdamScalars& s) {     \
    adam_with_flags<T>(w, g, backup, exp_avg, exp_avg_sq, n, s);                             \
  }                                                                                          \
  SLSAM_MULTIVERSIONED void sgd_block(T* w, const T* g, const T* backup, T* momentum_buffer, \
                                      int64_t n, const SgdScalars& s) {                      \
    sgd<T>(w, g, backup, momentum_buffer, n, s);                                             \
  }

SLSAM_DEFINE_BLOCK_KERNELS(float)
SLSAM_DEFINE_BLOCK_KERNELS(double)
SLSAM_DEFINE_BLOCK_KERNELS(c10::BFloat16)
SLSAM_DEFINE_BLOCK_KERNELS(c10::Half)

#undef SLSAM_DEFINE_BLOCK_KERNELS

}  // namespace slsam::cpu
