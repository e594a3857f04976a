#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>

#include "../ops.h"
#include "blocks.h"
#include "kernels.h"

namespace slsam::cpu {

at::Tensor grad_sqnorms(const TensorList& grads, const TensorList& weights) {
  const bool weighted = !weights.empty();
  const auto blocks = split_into_blocks(grads);
  std::vector<float> partials(blocks.size());
  for_each_block(blocks, [&](int64_t k, const Block& b) {
    const at::Tensor& g = grads[b.tensor];
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, g.scalar_type(), "grad_sqnorms",
                                    [&] {
                                      const auto* gp = data_of<scalar_t>(g) + b.begin;
                                      const int64_t n = b.end - b.begin;
                                      partials[k] = weighted
                                                        ? weighted_sqnorm_block(
                                                              gp,
                                                              data_of<scalar_t>(
                                                                  weights[b.tensor]) +
                                                                  b.begin,
                                                              n)
                                                        : sqnorm_block(gp, n);
                                    });
  });
  // Blocks are summed in order in double: the result does not depend on the thread count.
  std::vector<double> sums(grads.size(), 0.0);
  for (size_t k = 0; k < blocks.size(); ++k) {
    sums[blocks[k].tensor] += partials[k];
  }
  at::Tensor out = at::empty({static_cast<int64_t>(grads.size())}, at::kFloat);
  float* o = out.data_ptr<float>();
  for (size_t t = 0; t < sums.size(); ++t) {
    o[t] = static_cast<float>(sums[t]);
  }
  return out;
}

}  // namespace slsam::cpu
