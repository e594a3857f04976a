#include <cstring>

#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>

#include "../ops.h"
#include "blocks.h"
#include "kernels.h"

namespace slsam::cpu {

void perturb_(const TensorList& params, const TensorList& grads, const TensorList& backups,
              const at::Tensor& scales, bool adaptive) {
  const float* scale = scales.data_ptr<float>();
  for_each_block(split_into_blocks(params), [&](int64_t, const Block& b) {
    const at::Tensor& w = params[b.tensor];
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, w.scalar_type(), "perturb_", [&] {
      perturb_block(data_of<scalar_t>(w) + b.begin,
                    data_of<scalar_t>(grads[b.tensor]) + b.begin,
                    data_of<scalar_t>(backups[b.tensor]) + b.begin, b.end - b.begin,
                    scale[b.tensor], adaptive);
    });
  });
}

void restore_(const TensorList& params, const TensorList& backups) {
  for_each_block(split_into_blocks(params), [&](int64_t, const Block& b) {
    const at::Tensor& w = params[b.tensor];
    const auto bytes = static_cast<size_t>(w.element_size());
    std::memcpy(static_cast<char*>(w.data_ptr()) + b.begin * bytes,
                static_cast<const char*>(backups[b.tensor].data_ptr()) + b.begin * bytes,
                (b.end - b.begin) * bytes);
  });
}

}  // namespace slsam::cpu
