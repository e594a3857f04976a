#include <ATen/core/Tensor.h>
#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>

#include "../ops.h"
#include "blocks.h"

namespace slsam::cpu {
namespace {

// 16 independent fp32 accumulators: the compiler keeps them in vector registers, and the
// lane-wise sums are exact reorderings nobody has to license with -ffast-math.
constexpr int kLanes = 16;

template <typename T, bool kWeighted>
float block_sqnorm(const T* __restrict__ g, const T* __restrict__ w, int64_t n) {
  float acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) {
      float x = static_cast<float>(g[i + l]);
      if constexpr (kWeighted) {
        x *= static_cast<float>(w[i + l]);
      }
      acc[l] += x * x;
    }
  }
  for (int l = 0; i < n; ++i, ++l) {
    float x = static_cast<float>(g[i]);
    if constexpr (kWeighted) {
      x *= static_cast<float>(w[i]);
    }
    acc[l] += x * x;
  }
  for (int width = kLanes / 2; width > 0; width /= 2) {
    for (int l = 0; l < width; ++l) {
      acc[l] += acc[l + width];
    }
  }
  return acc[0];
}

}  // namespace

at::Tensor grad_sqnorms(const TensorList& grads, const TensorList& weights) {
  const bool weighted = !weights.empty();
  const auto blocks = split_into_blocks(grads);
  std::vector<float> partials(blocks.size());
  for_each_block(blocks, [&](int64_t k, const Block& b) {
    const at::Tensor& g = grads[b.tensor];
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, g.scalar_type(), "grad_sqnorms",
                                    [&] {
                                      const scalar_t* gp = data_of<scalar_t>(g) + b.begin;
                                      const int64_t n = b.end - b.begin;
                                      partials[k] =
                                          weighted ? block_sqnorm<scalar_t, true>(
                                                         gp,
                                                         data_of<scalar_t>(weights[b.tensor]) +
                                                             b.begin,
                                                         n)
                                                   : block_sqnorm<scalar_t, false>(gp, nullptr, n);
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
