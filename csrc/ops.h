// The extension's operations, one declaration per device. Callers (bindings.cpp) have checked
// list lengths, devices, dtypes and layouts (see layout.h), so implementations only compute.
#pragma once

#include <optional>
#include <vector>

#include <ATen/core/Tensor.h>

namespace slsam {

using TensorList = std::vector<at::Tensor>;
using OptionalTensorList = std::vector<std::optional<at::Tensor>>;

#define SLSAM_DECLARE_OPS                                                                     \
  /* fp32 [n]: ||g_i||^2, or ||w_i * g_i||^2 when weights is non-empty. */                   \
  at::Tensor grad_sqnorms(const TensorList& grads, const TensorList& weights);                \
  /* backup_i <- w_i, then w_i <- w_i + scale_i * g_i (ASAM: scale_i * g_i * w_i * w_i). */   \
  void perturb_(const TensorList& params, const TensorList& grads, const TensorList& backups, \
                const at::Tensor& scales, bool adaptive);                                     \
  void restore_(const TensorList& params, const TensorList& backups);                         \
  /* w_i <- Adam step from backup_i; scalars: fp32 [n, kAdamScalarCount]. */                  \
  void adam_restore_step_(const TensorList& params, const TensorList& grads,                  \
                          const TensorList& backups, const TensorList& exp_avgs,              \
                          const TensorList& exp_avg_sqs, const at::Tensor& scalars);          \
  /* w_i <- SGD step from backup_i; scalars: fp32 [n, kSgdScalarCount]. */                    \
  void sgd_restore_step_(const TensorList& params, const TensorList& grads,                   \
                         const TensorList& backups, const OptionalTensorList& momentum_buffers, \
                         const at::Tensor& scalars);

namespace cpu {
SLSAM_DECLARE_OPS
/* The SL-SAM probability update, host only: probs fp32 [N], active_norms fp32 [k],
   active_idx int64 [k], all CPU and contiguous; returns fp32 [N]. */
at::Tensor bandit_update(const at::Tensor& probs, const at::Tensor& active_norms,
                         const at::Tensor& active_idx, double budget, double lr, double p_min,
                         bool scale_free, double exploration);
}  // namespace cpu

namespace cuda {
SLSAM_DECLARE_OPS
}  // namespace cuda

#undef SLSAM_DECLARE_OPS

}  // namespace slsam
