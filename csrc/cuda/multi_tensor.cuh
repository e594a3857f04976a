// Multi-tensor launches: every tensor of one dtype is cut into fixed chunks, one CUDA block
// per chunk, and a single launch covers them all. The host writes one int64 table (pointers,
// sizes, the block -> (tensor, chunk) map) and copies it to the device from pinned memory, so
// the number of tensors per launch is unbounded and nothing is packed into kernel arguments.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAStream.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>

#include "../ops.h"

namespace slsam::cuda {

constexpr int kThreads = 256;
// 16K elements per block: 64 per thread; a 25M-element list still gives ~1500 blocks.
constexpr int64_t kChunkElements = int64_t{1} << 14;

// Device view of the table. Row order: `lists` rows of tensor pointers, then the numels, the
// tensors' positions in the caller's lists, each tensor's first block, and per block its
// tensor (in this launch) and chunk.
struct TensorTable {
  const int64_t* data;
  int64_t tensors;
  int64_t lists;
  int64_t blocks;

  template <typename T>
  __device__ T* ptr(int64_t list, int64_t t) const {
    return reinterpret_cast<T*>(data[list * tensors + t]);
  }
  __device__ int64_t numel(int64_t t) const { return data[lists * tensors + t]; }
  __device__ int64_t position(int64_t t) const { return data[(lists + 1) * tensors + t]; }
  __device__ int64_t first_block(int64_t t) const { return data[(lists + 2) * tensors + t]; }
  __device__ int64_t block_tensor(int64_t b) const { return data[(lists + 3) * tensors + b]; }
  __device__ int64_t block_chunk(int64_t b) const {
    return data[(lists + 3) * tensors + blocks + b];
  }
};

// The tensors of one launch: `pointers[list][k]` is list `list`'s tensor at caller position
// `positions[k]` (null where a list has no tensor there, e.g. SGD without momentum).
struct LaunchTable {
  at::Tensor storage;  // the device copy; kept alive until the launch is queued
  TensorTable view;
};

inline LaunchTable make_table(const std::vector<std::vector<const void*>>& pointers,
                              const std::vector<int64_t>& numels,
                              const std::vector<int64_t>& positions, const at::Device& device) {
  const auto tensors = static_cast<int64_t>(numels.size());
  const auto lists = static_cast<int64_t>(pointers.size());
  std::vector<int64_t> block_tensor, block_chunk, first_block;
  for (int64_t t = 0; t < tensors; ++t) {
    first_block.push_back(static_cast<int64_t>(block_tensor.size()));
    for (int64_t c = 0; c * kChunkElements < numels[t]; ++c) {
      block_tensor.push_back(t);
      block_chunk.push_back(c);
    }
  }
  const auto blocks = static_cast<int64_t>(block_tensor.size());
  at::Tensor host = at::empty({(lists + 3) * tensors + 2 * blocks},
                              at::TensorOptions().dtype(at::kLong).pinned_memory(true));
  int64_t* out = host.data_ptr<int64_t>();
  for (const auto& list : pointers) {
    for (const void* p : list) {
      *out++ = reinterpret_cast<int64_t>(p);
    }
  }
  const std::vector<int64_t>* rows[] = {&numels, &positions, &first_block, &block_tensor,
                                        &block_chunk};
  for (const auto* row : rows) {
    out = std::copy(row->begin(), row->end(), out);
  }
  at::Tensor storage = host.to(device, /*non_blocking=*/true);
  return {storage, TensorTable{storage.data_ptr<int64_t>(), tensors, lists, blocks}};
}

// Positions of `tensors` grouped by dtype, in order: one launch per group.
inline std::vector<std::vector<int64_t>> group_by_dtype(const TensorList& tensors) {
  std::vector<at::ScalarType> seen;
  std::vector<std::vector<int64_t>> groups;
  for (int64_t i = 0; i < static_cast<int64_t>(tensors.size()); ++i) {
    if (tensors[i].numel() == 0) {
      continue;
    }
    const auto it = std::find(seen.begin(), seen.end(), tensors[i].scalar_type());
    if (it == seen.end()) {
      seen.push_back(tensors[i].scalar_type());
      groups.push_back({i});
    } else {
      groups[it - seen.begin()].push_back(i);
    }
  }
  return groups;
}

inline std::vector<const void*> pointers_of(const TensorList& list,
                                            const std::vector<int64_t>& positions) {
  std::vector<const void*> out;
  for (int64_t i : positions) {
    out.push_back(list[i].data_ptr());
  }
  return out;
}

inline std::vector<int64_t> numels_of(const TensorList& list,
                                      const std::vector<int64_t>& positions) {
  std::vector<int64_t> out;
  for (int64_t i : positions) {
    out.push_back(list[i].numel());
  }
  return out;
}

// Runs op(table, t, i) for every element i of every tensor t, one block per chunk.
template <typename Op>
__global__ void for_each_element_kernel(TensorTable table, Op op) {
  const int64_t t = table.block_tensor(blockIdx.x);
  const int64_t begin = table.block_chunk(blockIdx.x) * kChunkElements;
  const int64_t end = min(begin + kChunkElements, table.numel(t));
  for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
    op(table, t, i);
  }
}

template <typename Op>
void for_each_element(const LaunchTable& table, const Op& op) {
  if (table.view.blocks == 0) {
    return;
  }
  for_each_element_kernel<<<table.view.blocks, kThreads, 0,
                            c10::cuda::getCurrentCUDAStream()>>>(table.view, op);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace slsam::cuda
