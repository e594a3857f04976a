#include <cstring>

#include <ATen/core/Tensor.h>
#include <ATen/Dispatch.h>

#include "../common/elementwise.h"
#include "../ops.h"
#include "blocks.h"

namespace slsam::cpu {
namespace {

template <typename T, bool kAdaptive>
void perturb_block(T* __restrict__ w, const T* __restrict__ g, T* __restrict__ backup,
                   int64_t n, float scale) {
  for (int64_t i = 0; i < n; ++i) {
    const T old = w[i];
    backup[i] = old;
    w[i] = static_cast<T>(
        perturbed(static_cast<float>(old), static_cast<float>(g[i]), scale, kAdaptive));
  }
}

}  // namespace

void perturb_(const TensorList& params, const TensorList& grads, const TensorList& backups,
              const at::Tensor& scales, bool adaptive) {
  const float* scale = scales.data_ptr<float>();
  for_each_block(split_into_blocks(params), [&](int64_t, const Block& b) {
    const at::Tensor& w = params[b.tensor];
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, w.scalar_type(), "perturb_", [&] {
      auto* wp = data_of<scalar_t>(w) + b.begin;
      const auto* gp = data_of<scalar_t>(grads[b.tensor]) + b.begin;
      auto* bp = data_of<scalar_t>(backups[b.tensor]) + b.begin;
      const int64_t n = b.end - b.begin;
      if (adaptive) {
        perturb_block<scalar_t, true>(wp, gp, bp, n, scale[b.tensor]);
      } else {
        perturb_block<scalar_t, false>(wp, gp, bp, n, scale[b.tensor]);
      }
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
