// The block kernels, each compiled twice by GCC/Clang function multi-versioning: for x86-64-v3
// (AVX2, FMA) and for the baseline, picked once at load time by the CPU. AVX2 measured on
// this project's 2-core EPYC: bf16 grad_sqnorms 2.5 -> 1.9 ms per 25M elements, and the
// Adam step's sqrt/div only vectorise with it. -ffp-contract=off keeps FMA out of both. The
// fp16 kernels and the optimizer steps have a third form, eight lanes (vec8.h), picked at
// load time.
#include "kernels.h"

#include "half.h"
#include "vec8.h"

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include <c10/util/bit_cast.h>

#if defined(__x86_64__) && defined(__linux__) && (defined(__GNUC__) || defined(__clang__))
#define SLSAM_MULTIVERSIONED __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define SLSAM_MULTIVERSIONED
#endif

namespace slsam::cpu {
namespace {

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

// kVec8: the tile is filled eight fp16 lanes at a time (F16C), the sums unchanged.
template <typename T, bool kWeighted, bool kVec8 = false>
__attribute__((always_inline)) inline float sqnorm(const T* __restrict__ g, const T* __restrict__ w,
                                                   int64_t n) {
  float acc[kLanes] = {};
  float tile[kTile];
  for (int64_t start = 0; start < n; start += kTile) {
    const int count = static_cast<int>(std::min<int64_t>(kTile, n - start));
    int j = 0;
#ifdef SLSAM_HAS_VEC8
    if constexpr (kVec8) {
      for (; j + 8 <= count; j += 8) {
        Vec8 x = load8(g + start + j);
        if constexpr (kWeighted) {
          x = x * load8(w + start + j);
        }
        store8(tile + j, x * x);
      }
    }
#endif
    for (; j < count; ++j) {
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

#ifdef SLSAM_HAS_VEC8
// perturb eight fp16 elements at a time (F16C), the last n % 8 by the loop above.
template <bool kAdaptive>
__attribute__((always_inline)) inline void perturb_loop8(Half16* __restrict__ w,
                                                         const Half16* __restrict__ g,
                                                         Half16* __restrict__ backup, int64_t n,
                                                         float scale) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const Vec8 old = load8(w + i);
    copy8(backup + i, w + i);
    store8(w + i, perturbed(old, load8(g + i), scale, kAdaptive));
  }
  perturb<Half16, kAdaptive>(w + i, g + i, backup + i, n - i, scale);
}
#endif

// The scalars come by value and each loop sits in a function with __restrict__ parameters:
// through a reference the compiler must assume they alias the outputs and the bf16 loops stay
// scalar. The flag lambdas are always_inline: target_clones clones only the functions it
// marks, so a lambda left out of line would run baseline code.
#define SLSAM_INLINE_LAMBDA __attribute__((always_inline))

// kInPlace: the step starts from w itself (BAR's rescaled step; the caller passed w as its
// backup), read through w: a restrict-qualified backup aliasing w would be undefined.
template <typename T, bool kL2, bool kSmallLerpWeight, bool kRoundOnce, bool kPrescale,
          bool kInPlace>
__attribute__((always_inline)) inline void adam(T* __restrict__ w, const T* __restrict__ g,
                                                const T* __restrict__ backup, T* __restrict__ m,
                                                T* __restrict__ v, int64_t n, const AdamScalars s) {
  for (int64_t i = 0; i < n; ++i) {
    float m_i = static_cast<float>(m[i]);
    float v_i = static_cast<float>(v[i]);
    w[i] = from_float<T>(adam_element<T, kL2, kSmallLerpWeight, kRoundOnce, kPrescale>(
        static_cast<float>(kInPlace ? w[i] : backup[i]), static_cast<float>(g[i]), m_i, v_i, s));
    m[i] = stored<T, kRoundOnce>(m_i);
    v[i] = stored<T, kRoundOnce>(v_i);
  }
}

template <typename T, bool kWeightDecay, bool kMomentum, bool kFirstStep, bool kNesterov,
          bool kInPlace>
__attribute__((always_inline)) inline void sgd(T* __restrict__ w, const T* __restrict__ g,
                                               const T* __restrict__ backup,
                                               T* __restrict__ buffer, int64_t n,
                                               const SgdScalars s) {
  for (int64_t i = 0; i < n; ++i) {
    float b = kMomentum && !kFirstStep ? static_cast<float>(buffer[i]) : 0.0f;
    w[i] = from_float<T>(sgd_element<T, kWeightDecay, kMomentum, kFirstStep, kNesterov>(
        static_cast<float>(kInPlace ? w[i] : backup[i]), static_cast<float>(g[i]), b, s));
    if constexpr (kMomentum) {
      buffer[i] = from_representable<T>(b);
    }
  }
}

#ifdef SLSAM_HAS_VEC8
// How many of p's first n elements come before the first address stream8 can store to.
template <typename E>
inline int64_t unaligned_head(const E* p, int64_t n) {
  constexpr uintptr_t kBytes = 8 * sizeof(E);
  const uintptr_t past = reinterpret_cast<uintptr_t>(p) % kBytes;
  return std::min<int64_t>(n, past == 0 ? 0 : static_cast<int64_t>((kBytes - past) / sizeof(E)));
}

// The new weights: streamed unless the step overwrites what it read (kInPlace).
template <bool kInPlace, typename E>
__attribute__((always_inline)) inline void store_weights8(E* w, Vec8 x) {
  if constexpr (kInPlace) {
    store8(w, x);
  } else {
    stream8(w, x);
  }
}

// The steps (E: float, Half16 or c10::BFloat16) eight elements at a time through Vec8, the
// unaligned head and the last n % 8 by the loops above: both round alike, so a tensor's
// elements do not depend on where its blocks start or end.
template <typename E, bool kL2, bool kSmallLerpWeight, bool kRoundOnce, bool kPrescale,
          bool kInPlace>
__attribute__((always_inline)) inline void adam_loop8(E* w, const E* g, const E* backup, E* m, E* v,
                                                      int64_t n, const AdamScalars s) {
  // From a backup, w is only written: streamed, it is not read first (restore + AdamW over 8M
  // fp32 elements, min of 40 interleaved: 5.9 -> 5.5 ms on one thread, 3.8 -> 3.4 on two;
  // torch's fused=True AdamW alone, which steps in place, 5.0 and 3.2).
  int64_t i = kInPlace ? 0 : unaligned_head(w, n);
  adam<E, kL2, kSmallLerpWeight, kRoundOnce, kPrescale, kInPlace>(w, g, backup, m, v, i, s);
  for (; i + 8 <= n; i += 8) {
    Vec8 m_i = load8(m + i);
    Vec8 v_i = load8(v + i);
    const Vec8 w_new = adam_element<E, kL2, kSmallLerpWeight, kRoundOnce, kPrescale>(
        load8(kInPlace ? w + i : backup + i), load8(g + i), m_i, v_i, s);
    // store8 rounds to nearest, which is exact for the moments without kRoundOnce
    store8(m + i, m_i);
    store8(v + i, v_i);
    store_weights8<kInPlace>(w + i, w_new);
  }
  if constexpr (!kInPlace) {
    stream_fence();
  }
  adam<E, kL2, kSmallLerpWeight, kRoundOnce, kPrescale, kInPlace>(
      w + i, g + i, kInPlace ? nullptr : backup + i, m + i, v + i, n - i, s);
}

template <typename E, bool kWeightDecay, bool kMomentum, bool kFirstStep, bool kNesterov,
          bool kInPlace>
__attribute__((always_inline)) inline void sgd_loop8(E* w, const E* g, const E* backup, E* buffer,
                                                     int64_t n, const SgdScalars s) {
  int64_t i = kInPlace ? 0 : unaligned_head(w, n);
  sgd<E, kWeightDecay, kMomentum, kFirstStep, kNesterov, kInPlace>(w, g, backup, buffer, i, s);
  for (; i + 8 <= n; i += 8) {
    Vec8 b = kMomentum && !kFirstStep ? load8(buffer + i) : broadcast(0.0f);
    const Vec8 w_new = sgd_element<E, kWeightDecay, kMomentum, kFirstStep, kNesterov>(
        load8(kInPlace ? w + i : backup + i), load8(g + i), b, s);
    if constexpr (kMomentum) {
      store8(buffer + i, b);
    }
    store_weights8<kInPlace>(w + i, w_new);
  }
  if constexpr (!kInPlace) {
    stream_fence();
  }
  sgd<E, kWeightDecay, kMomentum, kFirstStep, kNesterov, kInPlace>(
      w + i, g + i, kInPlace ? nullptr : backup + i, kMomentum ? buffer + i : nullptr, n - i, s);
}
#endif

// Whether a step takes the Vec8 loops (kVec8: x86-64-v3 only): fp16 and bf16 always, fp32 only
// from a backup, to stream w; in place GCC's own vectorised loop measured faster (4.8 vs 5.3 ms
// per 8M elements, one thread).
template <typename T, bool kVec8, bool kInPlace>
constexpr bool kEightLanes = kVec8 && (!std::is_same_v<T, float> || !kInPlace);

// The step loops with one tensor's flags as template arguments.
template <typename T, bool kVec8>
__attribute__((always_inline)) inline void adam_with_flags(T* w, const T* g, const T* backup,
                                                           T* m, T* v, int64_t n,
                                                           const AdamScalars& s) {
  with_adam_flags(
      s,
      [&]<bool kL2, bool kSmall, bool kRoundOnce, bool kPrescale, bool kInPlace>()
          SLSAM_INLINE_LAMBDA {
            const auto* from = kInPlace ? nullptr : as_compute(backup);
            if constexpr (kEightLanes<T, kVec8, kInPlace>) {
              adam_loop8<compute_t<T>, kL2, kSmall, kRoundOnce, kPrescale, kInPlace>(
                  as_compute(w), as_compute(g), from, as_compute(m), as_compute(v), n, s);
            } else {
              adam<compute_t<T>, kL2, kSmall, kRoundOnce, kPrescale, kInPlace>(
                  as_compute(w), as_compute(g), from, as_compute(m), as_compute(v), n, s);
            }
          },
      backup == w);
}

template <typename T, bool kVec8>
__attribute__((always_inline)) inline void sgd_with_flags(T* w, const T* g, const T* backup,
                                                          T* buffer, int64_t n,
                                                          const SgdScalars& s) {
  with_sgd_flags(
      s, buffer != nullptr,
      [&]<bool kDecay, bool kMomentum, bool kFirst, bool kNesterov, bool kInPlace>()
          SLSAM_INLINE_LAMBDA {
            const auto* from = kInPlace ? nullptr : as_compute(backup);
            if constexpr (kEightLanes<T, kVec8, kInPlace>) {
              sgd_loop8<compute_t<T>, kDecay, kMomentum, kFirst, kNesterov, kInPlace>(
                  as_compute(w), as_compute(g), from, as_compute(buffer), n, s);
            } else {
              sgd<compute_t<T>, kDecay, kMomentum, kFirst, kNesterov, kInPlace>(
                  as_compute(w), as_compute(g), from, as_compute(buffer), n, s);
            }
          },
      backup == w);
}

// Each kernel's portable form, for every dtype, cloned for x86-64-v3 and the baseline.
#define SLSAM_DEFINE_PORTABLE_KERNELS(T)                                                          \
  SLSAM_MULTIVERSIONED float sqnorm_portable(const T* g, const T* w, int64_t n) {                 \
    return w == nullptr ? sqnorm<compute_t<T>, false>(as_compute(g), nullptr, n)                  \
                        : sqnorm<compute_t<T>, true>(as_compute(g), as_compute(w), n);            \
  }                                                                                               \
  SLSAM_MULTIVERSIONED void perturb_portable(T* w, const T* g, T* backup, int64_t n, float scale, \
                                             bool adaptive) {                                     \
    if (adaptive) {                                                                               \
      perturb<compute_t<T>, true>(as_compute(w), as_compute(g), as_compute(backup), n, scale);    \
    } else {                                                                                      \
      perturb<compute_t<T>, false>(as_compute(w), as_compute(g), as_compute(backup), n, scale);   \
    }                                                                                             \
  }                                                                                               \
  SLSAM_MULTIVERSIONED void adam_portable(T* w, const T* g, const T* backup, T* m, T* v,          \
                                          int64_t n, const AdamScalars& s) {                      \
    adam_with_flags<T, false>(w, g, backup, m, v, n, s);                                          \
  }                                                                                               \
  SLSAM_MULTIVERSIONED void sgd_portable(T* w, const T* g, const T* backup, T* buffer, int64_t n, \
                                         const SgdScalars& s) {                                   \
    sgd_with_flags<T, false>(w, g, backup, buffer, n, s);                                         \
  }

SLSAM_DEFINE_PORTABLE_KERNELS(float)
SLSAM_DEFINE_PORTABLE_KERNELS(double)
SLSAM_DEFINE_PORTABLE_KERNELS(c10::BFloat16)
SLSAM_DEFINE_PORTABLE_KERNELS(c10::Half)
#undef SLSAM_DEFINE_PORTABLE_KERNELS

#ifdef SLSAM_HAS_VEC8
// The Vec8 forms (fp16; bf16's steps). flatten: Vec8's functions carry the x86-64-v3 target and the
// element functions none, so they inline only here, into a function built for it (a plain
// always_inline chain would not compile).
#define SLSAM_VEC8_KERNEL __attribute__((target("arch=x86-64-v3"), flatten))

SLSAM_VEC8_KERNEL float sqnorm_vec8(const c10::Half* g, const c10::Half* w, int64_t n) {
  return w == nullptr ? sqnorm<Half16, false, true>(as_compute(g), nullptr, n)
                      : sqnorm<Half16, true, true>(as_compute(g), as_compute(w), n);
}

SLSAM_VEC8_KERNEL void perturb_vec8(c10::Half* w, const c10::Half* g, c10::Half* backup, int64_t n,
                                    float scale, bool adaptive) {
  if (adaptive) {
    perturb_loop8<true>(as_compute(w), as_compute(g), as_compute(backup), n, scale);
  } else {
    perturb_loop8<false>(as_compute(w), as_compute(g), as_compute(backup), n, scale);
  }
}

template <typename T>
SLSAM_VEC8_KERNEL void adam_vec8(T* w, const T* g, const T* backup, T* m, T* v, int64_t n,
                                 const AdamScalars& s) {
  adam_with_flags<T, true>(w, g, backup, m, v, n, s);
}

template <typename T>
SLSAM_VEC8_KERNEL void sgd_vec8(T* w, const T* g, const T* backup, T* buffer, int64_t n,
                                const SgdScalars& s) {
  sgd_with_flags<T, true>(w, g, backup, buffer, n, s);
}
#undef SLSAM_VEC8_KERNEL

bool cpu_runs_vec8_kernels() {
  __builtin_cpu_init();  // this runs in a static initialiser, maybe before libgcc's own
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
         __builtin_cpu_supports("f16c");
}

bool vec8_kernels_enabled = cpu_runs_vec8_kernels();

// The Vec8 form of a kernel where this CPU runs it, else the portable one.
#define SLSAM_VEC8_OR_PORTABLE(kernel, ...) \
  if (vec8_kernels_enabled) {               \
    return kernel##_vec8(__VA_ARGS__);      \
  }                                         \
  return kernel##_portable(__VA_ARGS__)
#else
#define SLSAM_VEC8_OR_PORTABLE(kernel, ...) return kernel##_portable(__VA_ARGS__)
#endif
#define SLSAM_PORTABLE(kernel, ...) return kernel##_portable(__VA_ARGS__)

}  // namespace

bool use_vec8_kernels(bool enabled) {
#ifdef SLSAM_HAS_VEC8
  const bool before = vec8_kernels_enabled;
  vec8_kernels_enabled = enabled && cpu_runs_vec8_kernels();
  return before;
#else
  (void)enabled;
  return false;
#endif
}

// DISPATCH: SLSAM_PORTABLE, or SLSAM_VEC8_OR_PORTABLE for fp16; STEP_DISPATCH the same for
// the optimizer steps, where bf16 has a Vec8 form too.
#define SLSAM_DEFINE_BLOCK_KERNELS(T, DISPATCH, STEP_DISPATCH)                                  \
  float sqnorm_block(const T* g, int64_t n) { DISPATCH(sqnorm, g, nullptr, n); }                \
  float weighted_sqnorm_block(const T* g, const T* w, int64_t n) { DISPATCH(sqnorm, g, w, n); } \
  void perturb_block(T* w, const T* g, T* backup, int64_t n, float scale, bool adaptive) {      \
    DISPATCH(perturb, w, g, backup, n, scale, adaptive);                                        \
  }                                                                                             \
  void adam_block(T* w, const T* g, const T* backup, T* exp_avg, T* exp_avg_sq, int64_t n,      \
                  const AdamScalars& s) {                                                       \
    STEP_DISPATCH(adam, w, g, backup, exp_avg, exp_avg_sq, n, s);                               \
  }                                                                                             \
  void sgd_block(T* w, const T* g, const T* backup, T* momentum_buffer, int64_t n,              \
                 const SgdScalars& s) {                                                         \
    STEP_DISPATCH(sgd, w, g, backup, momentum_buffer, n, s);                                    \
  }

SLSAM_DEFINE_BLOCK_KERNELS(float, SLSAM_PORTABLE, SLSAM_VEC8_OR_PORTABLE)
SLSAM_DEFINE_BLOCK_KERNELS(double, SLSAM_PORTABLE, SLSAM_PORTABLE)
SLSAM_DEFINE_BLOCK_KERNELS(c10::BFloat16, SLSAM_PORTABLE, SLSAM_VEC8_OR_PORTABLE)
SLSAM_DEFINE_BLOCK_KERNELS(c10::Half, SLSAM_VEC8_OR_PORTABLE, SLSAM_VEC8_OR_PORTABLE)

#undef SLSAM_DEFINE_BLOCK_KERNELS
#undef SLSAM_VEC8_OR_PORTABLE
#undef SLSAM_PORTABLE

}  // namespace slsam::cpu
