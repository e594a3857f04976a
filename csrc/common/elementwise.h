// Per-element math shared by the CPU loops and the CUDA kernels, so both backends round alike.
//
// Every value is widened to fp32, and rounded back to the storage type T wherever torch's own
// for-loop optimizers store an intermediate tensor (`rounded<T>`), so a bf16/fp16 step follows
// torch's roundings. The builds pass -ffp-contract=off / --fmad=false, so `w + s * g` rounds
// twice, as torch's reference ascent does; where torch's own kernels fuse a multiply-add
// (add(b, alpha=), lerp, addcmul: ATen's CPU loops call fmadd, nvcc contracts them on CUDA),
// the optimizer steps call fma() too (measured on an AVX-512 Xeon: 100% of fp32 results equal;
// torch's AVX2 sqrt is not always correctly rounded, so there some differ: csrc/README.md).
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

#include <c10/macros/Macros.h>
#include <c10/util/BFloat16.h>
#include <c10/util/bit_cast.h>

namespace slsam {

// fp32 -> T, round-to-nearest-even as c10 does. For bf16 this is c10's rounding bit for bit
// (NaN -> 0x7FC0) written with masks instead of its NaN branch: with the branch (or a select)
// GCC leaves the bf16 Adam loop scalar ("control flow in loop").
template <typename T>
C10_HOST_DEVICE C10_ALWAYS_INLINE T from_float(float x) {
  if constexpr (std::is_same_v<T, c10::BFloat16>) {
    const uint32_t u = c10::bit_cast<uint32_t>(x);
    const uint32_t rounded_bits = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
    const uint32_t nan_mask = 0u - static_cast<uint32_t>(x != x);
    const uint32_t out = (rounded_bits & ~nan_mask) | (0x7FC0u & nan_mask);
    return c10::BFloat16(static_cast<uint16_t>(out), c10::BFloat16::from_bits());
  } else {
    return static_cast<T>(x);
  }
}

template <typename T>
C10_HOST_DEVICE C10_ALWAYS_INLINE float rounded(float x) {
  return static_cast<float>(from_float<T>(x));
}

// fp32 -> T for an x that is T-representable (a rounded<T> value, NaN included): for bf16 its
// top bits, without from_float's rounding (the CPU's bf16 AdamW step over 8M elements, one
// thread: 22.8 -> 20.0 ms).
template <typename T>
C10_HOST_DEVICE C10_ALWAYS_INLINE T from_representable(float x) {
  if constexpr (std::is_same_v<T, c10::BFloat16>) {
    const uint32_t u = c10::bit_cast<uint32_t>(x);
    return c10::BFloat16(static_cast<uint16_t>(u >> 16), c10::BFloat16::from_bits());
  } else {
    return from_float<T>(x);
  }
}

C10_HOST_DEVICE inline float fused_multiply_add(float a, float b, float c) {
  return fmaf(a, b, c);
}

C10_HOST_DEVICE inline float square_root(float x) {
  return std::sqrt(x);
}

// torch's a.add(b, alpha=alpha): one rounding.
C10_HOST_DEVICE inline float add_scaled(float a, float alpha, float b) {
  return fmaf(alpha, b, a);
}

// SAM ascent: w + s*g, ASAM: w + ((s*g)*w)*w, the reference's order of operations. F as for
// adam_element.
template <typename F>
C10_HOST_DEVICE C10_ALWAYS_INLINE F perturbed(F w, F g, float scale, bool adaptive) {
  F e = scale * g;
  if (adaptive) {
    e = e * w * w;
  }
  return w + e;
}

// Scalars of one tensor's Adam/AdamW step, precomputed on the host in double as torch does.
struct AdamScalars {
  float decay;  // 1 - lr * weight_decay (AdamW), else 1
  float l2;  // weight_decay (Adam), else 0
  float lerp_weight;  // 1 - beta1
  float beta2;
  float one_minus_beta2;
  float bias_correction2_sqrt;
  float eps;
  float neg_step_size;  // -lr / (1 - beta1^step)
  float prescale;  // BAR's factor on w before the step (rounded once, as w.mul_(c)), else 1
  float round_once;  // 1: torch's fused=True numerics (fp32 throughout, rounded at the stores)
};
constexpr int kAdamScalarCount = 10;

// x rounded to T where torch's for-loop step stores an intermediate tensor; kept in fp32 under
// kRoundOnce (torch's fused=True kernels compute in fp32 and round only what they store).
template <typename T, bool kRoundOnce, typename F>
C10_HOST_DEVICE C10_ALWAYS_INLINE F intermediate(F x) {
  if constexpr (kRoundOnce) {
    return x;
  } else {
    return rounded<T>(x);
  }
}

// One element of torch's _single_tensor_adam (amsgrad, maximize off) starting from the backup
// `w` times `prescale`; updates m and v (the state's values, widened) in place and returns the
// new weight (unrounded); without kRoundOnce m and v come back T-representable, so storing
// them is exact (store them with `stored`). The branches torch takes per tensor are template
// flags, so CPU loops hoist them and vectorise: kL2 (Adam's weight_decay != 0),
// kSmallLerpWeight (torch.lerp's formula choice, |1 - beta1| < 0.5, see ATen/native/Lerp.h),
// kRoundOnce (fused=True) and kPrescale (prescale != 1). F is float, or a vector of floats that
// brings its own rounded, add_scaled, fused_multiply_add and square_root (csrc/cpu/vec8.h).
template <typename T, bool kL2, bool kSmallLerpWeight, bool kRoundOnce, bool kPrescale, typename F>
C10_HOST_DEVICE C10_ALWAYS_INLINE F adam_element(F w, F g, F& m, F& v, const AdamScalars& s) {
  // BAR's w.mul_(c) is a tensor op of its own before either form of torch's step, so it
  // rounds. Skipped at 1, where rounded<T>(w * 1) == w for a T value: in fused=True's bf16
  // step it was one rounding in four (restore + AdamW over 8M elements, two threads: 1.05x ->
  // 0.97x the time of torch's fused=True AdamW alone, interleaved in one process).
  if constexpr (kPrescale) {
    w = rounded<T>(w * s.prescale);
  }
  if constexpr (kL2) {
    g = intermediate<T, kRoundOnce>(add_scaled(g, s.l2, w));
  }
  // decay is exactly 1 unless AdamW decays the weight, and w * 1 == w: no branch needed.
  w = intermediate<T, kRoundOnce>(w * s.decay);
  const F m_old = m;
  m = intermediate<T, kRoundOnce>(kSmallLerpWeight
                                      ? add_scaled(m_old, s.lerp_weight, g - m_old)
                                      : add_scaled(g, -(1.0f - s.lerp_weight), g - m_old));
  // addcmul_(g, g, value=c): fma(c * g, g, v), as ATen's CPU loop computes it.
  v = intermediate<T, kRoundOnce>(
      fused_multiply_add(s.one_minus_beta2 * g, g, intermediate<T, kRoundOnce>(v * s.beta2)));
  const F denom = intermediate<T, kRoundOnce>(
      intermediate<T, kRoundOnce>(square_root(v) / s.bias_correction2_sqrt) + s.eps);
  return w + s.neg_step_size * m / denom;
}

// An Adam moment as adam_element left it, in T: exact without kRoundOnce (its top bits, for
// bf16), rounded under it.
template <typename T, bool kRoundOnce>
C10_HOST_DEVICE C10_ALWAYS_INLINE T stored(float x) {
  if constexpr (kRoundOnce) {
    return from_float<T>(x);
  } else {
    return from_representable<T>(x);
  }
}

// Calls body.template operator()<b0, b1, ...>() with the runtime bools as template arguments,
// so a loop over elements sees per-tensor branches as constants (and vectorises). Always
// inlined: the CPU kernels' target_clones reach only code inlined into them.
template <bool... kFixed, typename Body, typename... Bools>
C10_HOST_DEVICE C10_ALWAYS_INLINE void with_flags(Body&& body, bool flag, Bools... rest) {
  if constexpr (sizeof...(rest) == 0) {
    flag ? body.template operator()<kFixed..., true>()
         : body.template operator()<kFixed..., false>();
  } else {
    flag ? with_flags<kFixed..., true>(body, rest...)
         : with_flags<kFixed..., false>(body, rest...);
  }
}

// The flags of adam_element for one tensor's scalars: kL2, kSmallLerpWeight, kRoundOnce,
// kPrescale, then `extra`.
template <typename Body, typename... Extra>
C10_HOST_DEVICE C10_ALWAYS_INLINE void with_adam_flags(const AdamScalars& s, Body&& body,
                                                       Extra... extra) {
  with_flags(body, s.l2 != 0.0f, s.lerp_weight > -0.5f && s.lerp_weight < 0.5f,
             s.round_once != 0.0f, s.prescale != 1.0f, extra...);
}

// Scalars of one tensor's SGD step.
struct SgdScalars {
  float weight_decay;
  float momentum;
  float one_minus_dampening;
  float neg_lr;
  float nesterov;  // 0 or 1
  float first_step;  // 1: the momentum buffer is new, torch's rule buf = d_p applies
  float prescale;  // BAR's factor on w before the step, as in AdamScalars
};
constexpr int kSgdScalarCount = 7;

// One element of torch's _single_tensor_sgd (maximize off) from the backup `w` times
// `prescale`; `buf` is the momentum buffer's value (unused without kMomentum: torch keeps no
// buffer then; not read with kFirstStep), updated in place and T-representable. Returns the
// new weight (unrounded). kFirstStep: the buffer is new, torch's rule buf = d_p applies. F as
// for adam_element.
template <typename T, bool kWeightDecay, bool kMomentum, bool kFirstStep, bool kNesterov,
          typename F>
C10_HOST_DEVICE C10_ALWAYS_INLINE F sgd_element(F w, F g, F& buf, const SgdScalars& s) {
  w = rounded<T>(w * s.prescale);
  if constexpr (kWeightDecay) {
    g = rounded<T>(add_scaled(g, s.weight_decay, w));
  }
  if constexpr (kMomentum) {
    buf = kFirstStep ? g
                     : rounded<T>(add_scaled(rounded<T>(buf * s.momentum),
                                             s.one_minus_dampening, g));
    g = kNesterov ? rounded<T>(add_scaled(g, s.momentum, buf)) : buf;
  }
  return add_scaled(w, s.neg_lr, g);
}

// The flags of sgd_element for one tensor: kWeightDecay, kMomentum, kFirstStep, kNesterov,
// then `extra`.
template <typename Body, typename... Extra>
C10_HOST_DEVICE C10_ALWAYS_INLINE void with_sgd_flags(const SgdScalars& s, bool momentum,
                                                      Body&& body, Extra... extra) {
  with_flags(body, s.weight_decay != 0.0f, momentum, momentum && s.first_step != 0.0f,
             momentum && s.nesterov != 0.0f, extra...);
}

}  // namespace slsam
