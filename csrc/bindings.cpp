// Python entry points of slsam_kernels._C. Each op checks the layout precondition (layout.h)
// and returns False, having written nothing, when a call does not meet it.
#include <algorithm>
#include <stdexcept>

#include <ATen/Dispatch.h>
#include <ATen/ops/zeros.h>
#include <torch/csrc/utils/pybind.h>

#include "common/elementwise.h"
#include "cpu/kernels.h"
#include "layout.h"
#include "ops.h"

namespace slsam {
namespace {

#ifdef SLSAM_WITH_CUDA
#define SLSAM_ON_DEVICE(op, tensor, ...) \
  ((tensor).is_cuda() ? cuda::op(__VA_ARGS__) : cpu::op(__VA_ARGS__))
constexpr bool kBuiltWithCuda = true;
#else
#define SLSAM_ON_DEVICE(op, tensor, ...)                                          \
  ((tensor).is_cuda() ? throw std::invalid_argument(                            \
                            "slsam_kernels._C was built without CUDA support") \
                      : cpu::op(__VA_ARGS__))
constexpr bool kBuiltWithCuda = false;
#endif

bool valid_scalar_table(const at::Tensor& table, size_t rows, int64_t columns) {
  return table.scalar_type() == at::kFloat && table.device().is_cpu() && table.dim() == 2 &&
         table.size(0) == static_cast<int64_t>(rows) && table.size(1) == columns &&
         table.is_contiguous();
}

// torch keeps Adam's `step` as a CPU scalar tensor and adds 1 before using it.
bool valid_steps(const TensorList& steps, size_t count) {
  return steps.size() == count &&
         std::all_of(steps.begin(), steps.end(), [](const at::Tensor& s) {
           return s.device().is_cpu() && s.numel() == 1 &&
                  (s.scalar_type() == at::kFloat || s.scalar_type() == at::kDouble);
         });
}

void increment(const TensorList& steps) {
  for (const at::Tensor& s : steps) {
    AT_DISPATCH_FLOATING_TYPES(s.scalar_type(), "increment", [&] { *s.data_ptr<scalar_t>() += 1; });
  }
}

at::Tensor grad_sqnorms(TensorList grads, std::optional<TensorList> weights) {
  if (grads.empty()) {
    return at::zeros({0}, at::kFloat);
  }
  TensorList w = weights.value_or(TensorList{});
  for (size_t i = 0; i < grads.size(); ++i) {
    if (!w.empty() && w[i].scalar_type() != grads[i].scalar_type()) {
      // The reference multiplies in fp32: so do we, on fp32 copies (exact).
      grads[i] = grads[i].to(at::kFloat).contiguous();
      w[i] = w[i].to(at::kFloat).contiguous();
    } else if (!w.empty() && !laid_out_alike(grads[i], w[i])) {
      grads[i] = grads[i].contiguous();
      w[i] = w[i].contiguous();
    } else if (!grads[i].is_non_overlapping_and_dense()) {
      grads[i] = grads[i].contiguous();
    }
  }
  return SLSAM_ON_DEVICE(grad_sqnorms, grads[0], grads, w);
}

bool perturb(const TensorList& params, const TensorList& grads, const TensorList& backups,
             const at::Tensor& scales, bool adaptive) {
  // The kernels read scales where the tensors are: a CPU table for CUDA tensors would be a host
  // pointer dereferenced on the device.
  if (!params.empty() && scales.device() != params[0].device()) {
    throw std::invalid_argument("perturb_: scales is on " + scales.device().str() +
                                " but the tensors are on " + params[0].device().str() +
                                ": pass scales on the tensors' device (scales.to(device))");
  }
  if (!laid_out_alike({&params, &grads, &backups}) || scales.scalar_type() != at::kFloat ||
      scales.numel() != static_cast<int64_t>(params.size())) {
    return false;
  }
  if (!params.empty()) {
    SLSAM_ON_DEVICE(perturb_, params[0], params, grads, backups, scales.contiguous(), adaptive);
  }
  return true;
}

bool restore(const TensorList& params, const TensorList& backups) {
  if (!laid_out_alike({&params, &backups})) {
    return false;
  }
  if (!params.empty()) {
    SLSAM_ON_DEVICE(restore_, params[0], params, backups);
  }
  return true;
}

bool adam_restore_step(const TensorList& params, const TensorList& grads,
                       const TensorList& backups, const TensorList& exp_avgs,
                       const TensorList& exp_avg_sqs, const TensorList& steps,
                       const at::Tensor& scalars) {
  if (!laid_out_alike({&params, &grads, &backups, &exp_avgs, &exp_avg_sqs}) ||
      !valid_steps(steps, params.size()) ||
      !valid_scalar_table(scalars, params.size(), kAdamScalarCount)) {
    return false;
  }
  if (!params.empty()) {
    SLSAM_ON_DEVICE(adam_restore_step_, params[0], params, grads, backups, exp_avgs,
                    exp_avg_sqs, scalars);
  }
  increment(steps);
  return true;
}

bool sgd_restore_step(const TensorList& params, const TensorList& grads,
                      const TensorList& backups, const OptionalTensorList& momentum_buffers,
                      const at::Tensor& scalars) {
  if (!laid_out_alike({&params, &grads, &backups}) ||
      momentum_buffers.size() != params.size() ||
      !valid_scalar_table(scalars, params.size(), kSgdScalarCount)) {
    return false;
  }
  for (size_t i = 0; i < params.size(); ++i) {
    if (momentum_buffers[i].has_value() && !laid_out_alike(params[i], *momentum_buffers[i])) {
      return false;
    }
  }
  if (!params.empty()) {
    SLSAM_ON_DEVICE(sgd_restore_step_, params[0], params, grads, backups, momentum_buffers,
                    scalars);
  }
  return true;
}

at::Tensor bandit_update(const at::Tensor& probs, const at::Tensor& active_norms,
                         const at::Tensor& active_idx, double budget, double lr, double p_min,
                         bool scale_free, double exploration) {
  const auto host_vector = [](const at::Tensor& t, at::ScalarType dtype) {
    return t.device().is_cpu() && t.dim() == 1 && t.scalar_type() == dtype && t.is_contiguous();
  };
  if (!host_vector(probs, at::kFloat) || !host_vector(active_norms, at::kFloat) ||
      !host_vector(active_idx, at::kLong) || active_norms.numel() != active_idx.numel()) {
    throw std::invalid_argument(
        "bandit_update takes contiguous 1-D CPU tensors: probs and active_norms fp32, "
        "active_idx int64 with one entry per norm");
  }
  return cpu::bandit_update(probs, active_norms, active_idx, budget, lr, p_min, scale_free,
                            exploration);
}

}  // namespace
}  // namespace slsam

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "slsam_kernels' compiled operations (CPU loops; CUDA kernels when built with CUDA)";
  m.attr("built_with_cuda") = slsam::kBuiltWithCuda;
  m.attr("adam_scalar_count") = slsam::kAdamScalarCount;
  m.attr("sgd_scalar_count") = slsam::kSgdScalarCount;
  m.def("grad_sqnorms", &slsam::grad_sqnorms, py::arg("grads"), py::arg("weights") = py::none(),
        "fp32 [n]: per-tensor ||g||^2 (||w*g||^2 with weights), fp32 accumulation");
  m.def("perturb_", &slsam::perturb, py::arg("params"), py::arg("grads"), py::arg("backups"),
        py::arg("scales"), py::arg("adaptive"),
        "backup <- w; w <- w + scale*g (ASAM: scale*g*w*w). False if layouts differ.");
  m.def("restore_", &slsam::restore, py::arg("params"), py::arg("backups"),
        "w <- backup, bit-exact. False if layouts differ.");
  m.def("adam_restore_step_", &slsam::adam_restore_step, py::arg("params"), py::arg("grads"),
        py::arg("backups"), py::arg("exp_avgs"), py::arg("exp_avg_sqs"), py::arg("steps"),
        py::arg("scalars"),
        "torch's Adam/AdamW step reading w from the backup, then steps += 1. False if "
        "layouts differ.");
  m.def("sgd_restore_step_", &slsam::sgd_restore_step, py::arg("params"), py::arg("grads"),
        py::arg("backups"), py::arg("momentum_buffers"), py::arg("scalars"),
        "torch's SGD step reading w from the backup. False if layouts differ.");
  m.def("bandit_update", &slsam::bandit_update, py::arg("probs"), py::arg("active_norms"),
        py::arg("active_idx"), py::arg("budget"), py::arg("lr"), py::arg("p_min"),
        py::arg("scale_free"), py::arg("exploration"),
        "fp32 [N]: the SL-SAM bandit's new probabilities (the reference's operations, in "
        "double, on the host)");
  m.def("use_vec8_kernels", &slsam::cpu::use_vec8_kernels, py::arg("enabled"),
        "Whether the CPU fp16 kernels (norms, perturbation, Adam/SGD steps) and bf16 Adam/SGD "
        "steps take their eight-lane loops (where the CPU has AVX2, FMA and F16C; the same "
        "bits either way). Returns the setting before.");
}
