#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAGuard.h>

#include "multi_tensor.cuh"

namespace slsam::cuda {
namespace {

// Each thread adds the squares of the elements `transform` deals it, in its order, then a fixed
// reduction tree: the same inputs, at the same offset from a 16-byte boundary, always give the
// same bits.
template <typename T, bool kWeighted>
__global__ void __launch_bounds__(kThreads)
    chunk_sqnorm_kernel(TensorTable table, float* partials) {
  const Chunk chunk = chunk_of_block(table);
  constexpr int kIn = kWeighted ? 2 : 1;
  Streams<T, kIn, 0> streams{};
  streams.in[0] = table.ptr<const T>(0, chunk.tensor);
  if constexpr (kWeighted) {
    streams.in[1] = table.ptr<const T>(1, chunk.tensor);
  }
  float acc = 0.0f;
  transform(chunk, streams, [&](const T (&in)[kIn], T (&)[1]) {
    float x = static_cast<float>(in[0]);
    if constexpr (kWeighted) {
      x *= static_cast<float>(in[1]);
    }
    acc += x * x;
  });
  for (int offset = 16; offset > 0; offset /= 2) {
    acc += __shfl_down_sync(0xffffffffu, acc, offset);
  }
  __shared__ float warp_sums[kThreads / 32];
  if (threadIdx.x % 32 == 0) {
    warp_sums[threadIdx.x / 32] = acc;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    float total = 0.0f;
    for (int w = 0; w < kThreads / 32; ++w) {
      total += warp_sums[w];
    }
    partials[blockIdx.x] = total;
  }
}

// One thread per tensor adds its chunks' partial sums in order, in double.
__global__ void sum_partials_kernel(TensorTable table, const float* partials, float* out) {
  const int64_t t = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (t >= table.tensors) {
    return;
  }
  const int64_t last = t + 1 < table.tensors ? table.first_block(t + 1) : table.blocks;
  double total = 0.0;
  for (int64_t b = table.first_block(t); b < last; ++b) {
    total += partials[b];
  }
  out[table.position(t)] = static_cast<float>(total);
}

}  // namespace

at::Tensor grad_sqnorms(const TensorList& grads, const TensorList& weights) {
  const c10::cuda::CUDAGuard guard(grads[0].device());
  at::Tensor out = at::zeros({static_cast<int64_t>(grads.size())},
                             grads[0].options().dtype(at::kFloat));
  const bool weighted = !weights.empty();
  const auto stream = c10::cuda::getCurrentCUDAStream();
  for (const auto& positions : group_by_dtype(grads)) {
    std::vector<std::vector<const void*>> pointers{pointers_of(grads, positions)};
    if (weighted) {
      pointers.push_back(pointers_of(weights, positions));
    }
    const LaunchTable table =
        make_table(pointers, numels_of(grads, positions), positions, grads[0].device());
    at::Tensor partials = at::empty({table.view.blocks}, out.options());
    AT_DISPATCH_FLOATING_TYPES_AND2(
        at::kBFloat16, at::kHalf, grads[positions[0]].scalar_type(), "grad_sqnorms", [&] {
          auto kernel = weighted ? chunk_sqnorm_kernel<scalar_t, true>
                                 : chunk_sqnorm_kernel<scalar_t, false>;
          kernel<<<table.view.blocks, kThreads, 0, stream>>>(table.view,
                                                             partials.data_ptr<float>());
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        });
    const auto tensors = static_cast<unsigned>(table.view.tensors);
    sum_partials_kernel<<<(tensors + kThreads - 1) / kThreads, kThreads, 0, stream>>>(
        table.view, partials.data_ptr<float>(), out.data_ptr<float>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  return out;
}

}  // namespace slsam::cuda
