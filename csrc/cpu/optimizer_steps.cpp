#include <ATen/core/Tensor.h>
#include <ATen/Dispatch.h>

#include "../common/elementwise.h"
#include "../ops.h"
#include "blocks.h"

namespace slsam::cpu {
namespace {

// Rows of the host's fp32 [n, count] scalar table, reinterpreted as the kernel's structs.
template <typename Scalars, int kCount>
const Scalars* scalar_rows(const at::Tensor& scalars) {
  static_assert(sizeof(Scalars) == kCount * sizeof(float), "scalar struct layout");
  return reinterpret_cast<const Scalars*>(scalars.data_ptr<float>());
}

}  // namespace

void adam_restore_step_(const TensorList& params, const TensorList& grads,
                        const TensorList& backups, const TensorList& exp_avgs,
                        const TensorList& exp_avg_sqs, const at::Tensor& scalars) {
  const auto* rows = scalar_rows<AdamScalars, kAdamScalarCount>(scalars);
  for_each_block(split_into_blocks(params), [&](int64_t, const Block& b) {
    const at::Tensor& w = params[b.tensor];
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, w.scalar_type(), "adam", [&] {
      using T = scalar_t;
      T* __restrict__ wp = data_of<T>(w) + b.begin;
      const T* __restrict__ gp = data_of<T>(grads[b.tensor]) + b.begin;
      const T* __restrict__ bp = data_of<T>(backups[b.tensor]) + b.begin;
      T* __restrict__ mp = data_of<T>(exp_avgs[b.tensor]) + b.begin;
      T* __restrict__ vp = data_of<T>(exp_avg_sqs[b.tensor]) + b.begin;
      const AdamScalars s = rows[b.tensor];
      for (int64_t i = 0, n = b.end - b.begin; i < n; ++i) {
        wp[i] = static_cast<T>(adam_element<T>(static_cast<float>(bp[i]),
                                               static_cast<float>(gp[i]), mp[i], vp[i], s));
      }
    });
  });
}

void sgd_restore_step_(const TensorList& params, const TensorList& grads,
                       const TensorList& backups, const OptionalTensorList& momentum_buffers,
                       const at::Tensor& scalars) {
  const auto* rows = scalar_rows<SgdScalars, kSgdScalarCount>(scalars);
  for_each_block(split_into_blocks(params), [&](int64_t, const Block& b) {
    const at::Tensor& w = params[b.tensor];
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, w.scalar_type(), "sgd", [&] {
      using T = scalar_t;
      T* __restrict__ wp = data_of<T>(w) + b.begin;
      const T* __restrict__ gp = data_of<T>(grads[b.tensor]) + b.begin;
      const T* __restrict__ bp = data_of<T>(backups[b.tensor]) + b.begin;
      const auto& buffer = momentum_buffers[b.tensor];
      const SgdScalars s = rows[b.tensor];
      const int64_t n = b.end - b.begin;
      if (buffer.has_value()) {
        T* __restrict__ mp = data_of<T>(*buffer) + b.begin;
        for (int64_t i = 0; i < n; ++i) {
          wp[i] = static_cast<T>(
              sgd_element<T>(static_cast<float>(bp[i]), static_cast<float>(gp[i]), mp + i, s));
        }
      } else {
        for (int64_t i = 0; i < n; ++i) {
          wp[i] = static_cast<T>(sgd_element<T>(static_cast<float>(bp[i]),
                                                static_cast<float>(gp[i]), nullptr, s));
        }
      }
    });
  });
}

}  // namespace slsam::cpu
