#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAGuard.h>

#include "../common/elementwise.h"
#include "multi_tensor.cuh"

namespace slsam::cuda {
namespace {

// Lists: 0 params, 1 grads, 2 backups, 3 exp_avg, 4 exp_avg_sq. Streams in: backup, g, m, v;
// out: w, m, v. The moments are stored as the CPU loops store them (`stored`).
template <typename T>
struct AdamStep {
  const AdamScalars* scalars;

  __device__ void operator()(const TensorTable& table, const Chunk& chunk) const {
    const int64_t t = chunk.tensor;
    const AdamScalars s = scalars[table.position(t)];
    T* m = table.ptr<T>(3, t);
    T* v = table.ptr<T>(4, t);
    const Streams<T, 4, 3> streams{{table.ptr<const T>(2, t), table.ptr<const T>(1, t), m, v},
                                   {table.ptr<T>(0, t), m, v}};
    with_adam_flags(s, [&]<bool kL2, bool kSmall, bool kRoundOnce, bool kPrescale>() {
      transform(chunk, streams, [&](const T (&in)[4], T (&out)[3]) {
        float m_i = static_cast<float>(in[2]);
        float v_i = static_cast<float>(in[3]);
        out[0] = from_float<T>(adam_element<T, kL2, kSmall, kRoundOnce, kPrescale>(
            static_cast<float>(in[0]), static_cast<float>(in[1]), m_i, v_i, s));
        out[1] = stored<T, kRoundOnce>(m_i);
        out[2] = stored<T, kRoundOnce>(v_i);
      });
    });
  }
};

// Lists: 0 params, 1 grads, 2 backups, 3 momentum buffers (null without momentum). Streams in:
// backup, g, and the buffer where the step reads it; out: w, and the buffer with momentum.
template <typename T>
struct SgdStep {
  const SgdScalars* scalars;

  __device__ void operator()(const TensorTable& table, const Chunk& chunk) const {
    const int64_t t = chunk.tensor;
    const SgdScalars s = scalars[table.position(t)];
    T* w = table.ptr<T>(0, t);
    const T* g = table.ptr<const T>(1, t);
    const T* backup = table.ptr<const T>(2, t);
    T* buffer = table.ptr<T>(3, t);
    with_sgd_flags(s, buffer != nullptr,
                   [&]<bool kDecay, bool kMomentum, bool kFirst, bool kNesterov>() {
                     constexpr bool kReadsBuffer = kMomentum && !kFirst;
                     constexpr int kIn = kReadsBuffer ? 3 : 2;
                     constexpr int kOut = kMomentum ? 2 : 1;
                     Streams<T, kIn, kOut> streams{{backup, g}, {w}};
                     if constexpr (kReadsBuffer) {
                       streams.in[2] = buffer;
                     }
                     if constexpr (kMomentum) {
                       streams.out[1] = buffer;
                     }
                     transform(chunk, streams, [&](const T (&in)[kIn], T (&out)[kOut]) {
                       float b = 0.0f;
                       if constexpr (kReadsBuffer) {
                         b = static_cast<float>(in[2]);
                       }
                       out[0] = from_float<T>(sgd_element<T, kDecay, kMomentum, kFirst, kNesterov>(
                           static_cast<float>(in[0]), static_cast<float>(in[1]), b, s));
                       if constexpr (kMomentum) {
                         out[1] = from_representable<T>(b);
                       }
                     });
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
                                      for_each_chunk(table, AdamStep<scalar_t>{rows});
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
                                      for_each_chunk(table, SgdStep<scalar_t>{rows});
                                    });
  }
}

}  // namespace slsam::cuda
