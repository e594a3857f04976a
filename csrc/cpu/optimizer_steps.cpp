#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>

#include "../ops.h"
#include "blocks.h"
#include "kernels.h"

namespace slsam::cpu {
namespace {

// Rows of the host's fp32 [n, count] scalar table, read as the kernels' structs.
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
      adam_block(data_of<scalar_t>(w) + b.begin, data_of<scalar_t>(grads[b.tensor]) + b.begin,
                 data_of<scalar_t>(backups[b.tensor]) + b.begin,
                 data_of<scalar_t>(exp_avgs[b.tensor]) + b.begin,
                 data_of<scalar_t>(exp_avg_sqs[b.tensor]) + b.begin, b.end - b.begin,
                 rows[b.tensor]);
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
      const auto& buffer = momentum_buffers[b.tensor];
      sgd_block(data_of<scalar_t>(w) + b.begin, data_of<scalar_t>(grads[b.tensor]) + b.begin,
                data_of<scalar_t>(backups[b.tensor]) + b.begin,
                buffer.has_value() ? data_of<scalar_t>(*buffer) + b.begin : nullptr,
                b.end - b.begin, rows[b.tensor]);
    });
  });
}

}  // namespace slsam::cpu
