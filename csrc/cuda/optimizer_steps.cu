#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAGuard.h>

#include "../common/elementwise.h"
#include "multi_tensor.cuh"

namespace slsam::cuda {
namespace {

// Lists: 0 params, 1 grads, 2 backups, 3 exp_avg, 4 exp_avg_sq.
template <typename T>
struct AdamStep {
  const AdamScalars* scalars;

  __device__ void operator()(const TensorTable& table, int64_t t, int64_t i) const {
    const AdamScalars& s = scalars[table.position(t)];
    T* w = table.ptr<T>(0, t);
    const float backup = static_cast<float>(table.ptr<const T>(2, t)[i]);
    const float g = static_cast<float>(table.ptr<const T>(1, t)[i]);
    T& m_ref = table.ptr<T>(3, t)[i];
    T& v_ref = table.ptr<T>(4, t)[i];
    float m = static_cast<float>(m_ref);
    float v = static_cast<float>(v_ref);
    with_adam_flags(s, [&]<bool kL2, bool kSmall, bool kRoundOnce, bool kPrescale>() {
      w[i] = from_float<T>(adam_element<T, kL2, kSmall, kRoundOnce, kPrescale>(backup, g, m, v, s));
    });
    m_ref = from_float<T>(m);
    v_ref = from_float<T>(v);
  }
};

// Lists: 0 params, 1 grads, 2 backups, 3 momentum buffers (null without momentum).
template <typename T>
struct SgdStep {
  const SgdScalars* scalars;

  __device__ void operator()(const TensorTable& table, int64_t t, int64_t i) const {
    const SgdScalars& s = scalars[table.position(t)];
    T* buffer = table.ptr<T>(3, t);
    T* w = table.ptr<T>(0, t);
    const float backup = static_cast<float>(table.ptr<const T>(2, t)[i]);
    const float g = static_cast<float>(table.ptr<const T>(1, t)[i]);
    with_sgd_flags(s, buffer != nullptr,
                   [&]<bool kDecay, bool kMomentum, bool kFirst, bool kNesterov>() {
                     float b = kMomentum && !kFirst ? static_cast<float>(buffer[i]) : 0.0f;
                     w[i] = from_float<T>(
                         sgd_element<T, kDecay, kMomentum, kFirst, kNesterov>(backup, g, b, s));
                     if constexpr (kMomentum) {
                       buffer[i] = from_float<T>(b);
                     }
                   });
  }
};

template <typename Scalars>
const Scalars* scalars_on(const at::Tensor& host_table, const at::Device& device,
                          at::Tensor& keep_alive) {
  keep_alive = host_table.to(device, /*non_blocking=*/true);
  return reinterpret_cast<const Scalars*>(keep_alive.data_ptr<float>());
}

}  // namespace

void adam_restore_step_(const TensorList& params, const TensorList& grads,
                        const TensorList& backups, const TensorList& exp_avgs,
                        const TensorList& exp_avg_sqs, const at::Tensor& scalars) {
  const at::Device device = params[0].device();
  const c10::cuda::CUDAGuard guard(device);
  at::Tensor device_scalars;
  const auto* rows = scalars_on<AdamScalars>(scalars, device, device_scalars);
  for (const auto& positions : group_by_dtype(params)) {
    const LaunchTable table = make_table(
        {pointers_of(params, positions), pointers_of(grads, positions),
         pointers_of(backups, positions), pointers_of(exp_avgs, positions),
         pointers_of(exp_avg_sqs, positions)},
        numels_of(params, positions), positions, device);
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf,
                                    params[positions[0]].scalar_type(), "adam", [&] {
                                      for_each_element(table, AdamStep<scalar_t>{rows});
                                    });
  }
}

void sgd_restore_step_(const TensorList& params, const TensorList& grads,
                       const TensorList& backups, const OptionalTensorList& momentum_buffers,
                       const at::Tensor& scalars) {
  const at::Device device = params[0].device();
  const c10::cuda::CUDAGuard guard(device);
  at::Tensor device_scalars;
  const auto* rows = scalars_on<SgdScalars>(scalars, device, device_scalars);
  for (const auto& positions : group_by_dtype(params)) {
    std::vector<const void*> buffers;
    for (int64_t i : positions) {
      const auto& buffer = momentum_buffers[i];
      buffers.push_back(buffer.has_value() ? buffer->data_ptr() : nullptr);
    }
    const LaunchTable table = make_table(
        {pointers_of(params, positions), pointers_of(grads, positions),
         pointers_of(backups, positions), buffers},
        numels_of(params, positions), positions, device);
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf,
                                    params[positions[0]].scalar_type(), "sgd", [&] {
                                      for_each_element(table, SgdStep<scalar_t>{rows});
                                    });
  }
}

}  // namespace slsam::cuda
