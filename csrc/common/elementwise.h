// Per-element math shared by the CPU loops and the CUDA kernels, so both backends round alike.
//
// Every value is widened to fp32, and rounded back to the storage type T wherever torch's own
// for-loop optimizers store an intermediate tensor (`rounded<T>`), so a bf16/fp16 step follows
// torch's roundings. No fused multiply-add: the builds pass -ffp-contract=off / --fmad=false,
// so `w + s * g` rounds twice, as torch's reference does.
#pragma once

#include <cmath>

#include <c10/macros/Macros.h>

namespace slsam {

template <typename T>
C10_HOST_DEVICE inline float rounded(float x) {
  return static_cast<float>(static_cast<T>(x));
}

// SAM ascent: w + s*g, ASAM: w + ((s*g)*w)*w, the reference's order of operations.
C10_HOST_DEVICE inline float perturbed(float w, float g, float scale, bool adaptive) {
  float e = scale * g;
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
};
constexpr int kAdamScalarCount = 8;

// torch.lerp's formula (ATen/native/Lerp.h), which picks the accurate side of the weight.
C10_HOST_DEVICE inline float lerp(float self, float end, float weight) {
  return std::abs(weight) < 0.5f ? self + weight * (end - self)
                                 : end - (end - self) * (1.0f - weight);
}

// One element of torch's _single_tensor_adam (amsgrad, maximize off) starting from the backup
// `w`; updates m and v in place and returns the new weight (unrounded).
template <typename T>
C10_HOST_DEVICE inline float adam_element(float w, float g, T& m_ref, T& v_ref,
                                          const AdamScalars& s) {
  if (s.l2 != 0.0f) {
    g = rounded<T>(g + s.l2 * w);
  }
  if (s.decay != 1.0f) {
    w = rounded<T>(w * s.decay);
  }
  const float m = rounded<T>(lerp(static_cast<float>(m_ref), g, s.lerp_weight));
  const float v = rounded<T>(rounded<T>(static_cast<float>(v_ref) * s.beta2) +
                             s.one_minus_beta2 * g * g);
  m_ref = static_cast<T>(m);
  v_ref = static_cast<T>(v);
  const float denom = rounded<T>(rounded<T>(std::sqrt(v) / s.bias_correction2_sqrt) + s.eps);
  return w + s.neg_step_size * m / denom;
}

// Scalars of one tensor's SGD step.
struct SgdScalars {
  float weight_decay;
  float momentum;
  float one_minus_dampening;
  float neg_lr;
  float nesterov;  // 0 or 1
  float first_step;  // 1: the momentum buffer is new, torch's rule buf = d_p applies
};
constexpr int kSgdScalarCount = 6;

// One element of torch's _single_tensor_sgd (maximize off) from the backup `w`. `buf` is null
// when momentum is 0 (torch keeps no buffer then). Returns the new weight (unrounded).
template <typename T>
C10_HOST_DEVICE inline float sgd_element(float w, float g, T* buf, const SgdScalars& s) {
  if (s.weight_decay != 0.0f) {
    g = rounded<T>(g + s.weight_decay * w);
  }
  if (buf != nullptr) {
    const float b = s.first_step != 0.0f
                        ? g
                        : rounded<T>(rounded<T>(static_cast<float>(*buf) * s.momentum) +
                                     s.one_minus_dampening * g);
    *buf = static_cast<T>(b);
    g = s.nesterov != 0.0f ? rounded<T>(g + s.momentum * b) : b;
  }
  return w + s.neg_lr * g;
}

}  // namespace slsam
