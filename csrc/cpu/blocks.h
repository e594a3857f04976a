// Work splitting for the CPU loops: every tensor is cut into fixed blocks, and the blocks are
// dealt to the threads in contiguous runs of about equal element counts. Fixed blocks make the
// per-block partial sums, and so the norms, independent of the thread count.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>

namespace slsam::cpu {

// 64K elements: 256 KB of fp32 per stream, so a block's streams stay in L2.
constexpr int64_t kBlockElements = int64_t{1} << 16;
// Below this many elements per thread, waking a second thread costs more than it saves.
constexpr int64_t kMinElementsPerThread = int64_t{1} << 15;

struct Block {
  int64_t tensor;
  int64_t begin;
  int64_t end;
};

inline std::vector<Block> split_into_blocks(const std::vector<at::Tensor>& tensors) {
  std::vector<Block> blocks;
  for (int64_t t = 0; t < static_cast<int64_t>(tensors.size()); ++t) {
    const int64_t n = tensors[t].numel();
    for (int64_t begin = 0; begin < n; begin += kBlockElements) {
      blocks.push_back({t, begin, std::min(n, begin + kBlockElements)});
    }
  }
  return blocks;
}

// Calls f(block_index, block) once per block, spread over at::get_num_threads() threads.
template <typename F>
void for_each_block(const std::vector<Block>& blocks, const F& f) {
  int64_t total = 0;
  for (const Block& b : blocks) {
    total += b.end - b.begin;
  }
  const int64_t parts = std::clamp<int64_t>(total / kMinElementsPerThread, 1,
                                            std::max(1, at::get_num_threads()));
  std::vector<int64_t> starts{0};
  int64_t done = 0;
  for (int64_t k = 0; k < static_cast<int64_t>(blocks.size()); ++k) {
    done += blocks[k].end - blocks[k].begin;
    const auto part = static_cast<int64_t>(starts.size());
    if (part < parts && done * parts >= total * part) {
      starts.push_back(k + 1);
    }
  }
  starts.resize(parts + 1, static_cast<int64_t>(blocks.size()));
  starts.back() = static_cast<int64_t>(blocks.size());
  at::parallel_for(0, parts, 1, [&](int64_t first_part, int64_t last_part) {
    for (int64_t part = first_part; part < last_part; ++part) {
      for (int64_t k = starts[part]; k < starts[part + 1]; ++k) {
        f(k, blocks[k]);
      }
    }
  });
}

template <typename T>
T* data_of(const at::Tensor& t) {
  return static_cast<T*>(t.data_ptr());
}

}  // namespace slsam::cpu
