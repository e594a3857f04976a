// Multi-tensor launches: every tensor of one dtype is cut into fixed chunks, one CUDA block
// per chunk, and a single launch covers them all. The host writes one int64 table (pointers,
// sizes, the block -> (tensor, chunk) map) and copies it to the device from pinned memory, so
// the number of tensors per launch is unbounded and nothing is packed into kernel arguments.
// `transform` walks one block's chunk in 16-byte accesses (csrc/README.md, CUDA memory access).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
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

// One block's work: elements [begin, end) of the launch's tensor `tensor`.
struct Chunk {
  int64_t tensor;
  int64_t begin;
  int64_t end;
};

__device__ __forceinline__ Chunk chunk_of_block(const TensorTable& table) {
  const int64_t t = table.block_tensor(blockIdx.x);
  const int64_t begin = table.block_chunk(blockIdx.x) * kChunkElements;
  return {t, begin, min(begin + kChunkElements, table.numel(t))};
}

// Runs op(table, chunk) once per block. The ops read the tensor's pointers and scalars from the
// tables once, into locals, then walk the chunk with `transform`: read per element inside the
// loop, they were reloaded for every element, since the stores might alias the tables.
template <typename Op>
__global__ void __launch_bounds__(kThreads) for_each_chunk_kernel(TensorTable table, Op op) {
  op(table, chunk_of_block(table));
}

template <typename Op>
void for_each_chunk(const LaunchTable& table, const Op& op) {
  if (table.view.blocks == 0) {
    return;
  }
  for_each_chunk_kernel<<<table.view.blocks, kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
      table.view, op);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// Global memory moves in 16-byte accesses (one LDG.E.128 / STG.E.128 each), two in flight per
// stream per thread: all loads of an iteration are issued before the first store.
constexpr int kAccessBytes = 16;
constexpr int kAccessesInFlight = 2;
// Tensors whose streams are not alike aligned move one element per access, this many in flight.
constexpr int kScalarsInFlight = 4;

template <typename T>
constexpr int kLanes = kAccessBytes / static_cast<int>(sizeof(T));

// kWidth consecutive elements, moved as one access.
template <typename T, int kWidth>
struct alignas(sizeof(T) * kWidth) Pack {
  T lane[kWidth];
};

// An access moves as one unsigned word of its size, 16-byte stores as one st.global.v4: written
// as a struct of c10::Half, or through a uint4* even with its alignment restated
// (__builtin_assume_aligned), some of nvcc's 16-byte stores came out as 4- and 8-byte ones.
template <int kBytes>
struct WordOf;
template <>
struct WordOf<2> {
  using type = unsigned short;
};
template <>
struct WordOf<4> {
  using type = unsigned int;
};
template <>
struct WordOf<8> {
  using type = uint2;
};
template <>
struct WordOf<16> {
  using type = uint4;
};

template <typename T, int kWidth>
__device__ __forceinline__ Pack<T, kWidth> load_access(const T* p) {
  using Word = typename WordOf<sizeof(Pack<T, kWidth>)>::type;
  const Word word = *static_cast<const Word*>(__builtin_assume_aligned(p, sizeof(Word)));
  Pack<T, kWidth> pack;
  memcpy(&pack, &word, sizeof(word));
  return pack;
}

template <typename T, int kWidth>
__device__ __forceinline__ void store_access(T* p, const Pack<T, kWidth>& pack) {
  using Word = typename WordOf<sizeof(Pack<T, kWidth>)>::type;
  Word word;
  memcpy(&word, &pack, sizeof(word));
  if constexpr (sizeof(Word) == kAccessBytes) {
    asm volatile("st.global.v4.u32 [%0], {%1, %2, %3, %4};" ::"l"(__cvta_generic_to_global(p)),
                 "r"(word.x), "r"(word.y), "r"(word.z), "r"(word.w)
                 : "memory");
  } else {
    *reinterpret_cast<Word*>(p) = word;
  }
}

// The kOut output accesses of one index range (none for a reduction).
template <typename T, int kWidth, int kOut>
struct Outputs {
  Pack<T, kWidth> stream[kOut > 0 ? kOut : 1];
};

// One tensor's streams: the element op reads in[0..kIn) and writes out[0..kOut) at the same
// index. Streams may coincide (perturb reads and writes w; BAR's step passes w as its own
// backup): every element is read before it is written, by the thread that writes it.
template <typename T, int kIn, int kOut>
struct Streams {
  const T* in[kIn];
  T* out[kOut > 0 ? kOut : 1];

  // The offset (bytes past a 16-byte boundary) all streams share, or -1 if they differ.
  __device__ int common_offset() const {
    const auto offset = [](const void* p) {
      return static_cast<int>(reinterpret_cast<uintptr_t>(p) % kAccessBytes);
    };
    int first = offset(in[0]);
#pragma unroll
    for (int s = 1; s < kIn; ++s) {
      first = offset(in[s]) == first ? first : -1;
    }
#pragma unroll
    for (int s = 0; s < kOut; ++s) {
      first = offset(out[s]) == first ? first : -1;
    }
    return first % static_cast<int>(sizeof(T)) == 0 ? first : -1;
  }
};

// The pointers come from an int64 table: without this nvcc emits generic loads and stores
// (LD/ST) instead of global ones (LDG/STG).
template <typename T>
__device__ __forceinline__ T* assume_global(T* p) {
  __builtin_assume(__isGlobal(p));
  return p;
}

// The kIn accesses of kWidth elements at element i.
template <int kWidth, typename T, int kIn, int kOut>
__device__ __forceinline__ void load(const Streams<T, kIn, kOut>& streams, int64_t i,
                                     Pack<T, kWidth> (&x)[kIn]) {
#pragma unroll
  for (int s = 0; s < kIn; ++s) {
    x[s] = load_access<T, kWidth>(assume_global(streams.in[s]) + i);
  }
}

template <int kWidth, typename T, int kIn, int kOut>
__device__ __forceinline__ void store(const Streams<T, kIn, kOut>& streams, int64_t i,
                                      const Outputs<T, kWidth, kOut>& y) {
#pragma unroll
  for (int s = 0; s < kOut; ++s) {
    store_access(assume_global(streams.out[s]) + i, y.stream[s]);
  }
}

// element(in, out) for each of the kWidth lanes of the inputs x.
template <typename T, int kWidth, int kIn, int kOut, typename Element>
__device__ __forceinline__ Outputs<T, kWidth, kOut> apply(const Element& element,
                                                          const Pack<T, kWidth> (&x)[kIn]) {
  Outputs<T, kWidth, kOut> y;
#pragma unroll
  for (int l = 0; l < kWidth; ++l) {
    T in[kIn];
    T out[kOut > 0 ? kOut : 1];
#pragma unroll
    for (int s = 0; s < kIn; ++s) {
      in[s] = x[s].lane[l];
    }
    element(in, out);
#pragma unroll
    for (int s = 0; s < kOut; ++s) {
      y.stream[s].lane[l] = out[s];
    }
  }
  return y;
}

// Accesses [0, accesses) of kWidth elements each, the first at element `first`, dealt to the
// block's threads kInFlight at a time (consecutive threads, consecutive accesses); `element`
// maps the kIn input values of one index to its kOut outputs.
template <int kWidth, int kInFlight, typename T, int kIn, int kOut, typename Element>
__device__ __forceinline__ void transform_accesses(const Streams<T, kIn, kOut>& streams,
                                                   int64_t first, int64_t accesses,
                                                   const Element& element) {
  using Access = Pack<T, kWidth>;
#pragma unroll 1
  for (int64_t base = threadIdx.x; base < accesses; base += int64_t{kInFlight} * kThreads) {
    Access x[kInFlight][kIn];
#pragma unroll
    for (int u = 0; u < kInFlight; ++u) {
      const int64_t a = base + u * kThreads;
      if (a < accesses) {
        load(streams, first + a * kWidth, x[u]);
      }
    }
#pragma unroll
    for (int u = 0; u < kInFlight; ++u) {
      const int64_t a = base + u * kThreads;
      if (a < accesses) {
        store(streams, first + a * kWidth, apply<T, kWidth, kIn, kOut>(element, x[u]));
      }
    }
  }
}

// element(in, out) for every index of the chunk, in any order. Where all streams share their
// offset from a 16-byte boundary (always, for tensors that start at one), the chunk moves in
// 16-byte accesses: single elements before the first boundary and after the last. Otherwise
// one element per access.
template <typename T, int kIn, int kOut, typename Element>
__device__ __forceinline__ void transform(const Chunk& chunk, const Streams<T, kIn, kOut>& streams,
                                          const Element& element) {
  constexpr int kVector = kLanes<T>;
  const int64_t size = chunk.end - chunk.begin;
  const int offset = streams.common_offset();
  if (offset < 0) {
    transform_accesses<1, kScalarsInFlight>(streams, chunk.begin, size, element);
    return;
  }
  // Chunks start kChunkElements apart, a multiple of 16 bytes: each has its tensor's offset.
  const int64_t head =
      min(size, static_cast<int64_t>((kAccessBytes - offset) % kAccessBytes / sizeof(T)));
  const int64_t vectors = (size - head) / kVector;
  const int64_t tail_begin = chunk.begin + head + vectors * kVector;
  transform_accesses<kVector, kAccessesInFlight>(streams, chunk.begin + head, vectors, element);
  // The head and the tail, fewer than kVector elements each: one per thread.
  const int64_t i =
      threadIdx.x < head ? chunk.begin + threadIdx.x : tail_begin + threadIdx.x - head;
  if (i < chunk.end) {
    Pack<T, 1> x[kIn];
    load(streams, i, x);
    store(streams, i, apply<T, 1, kIn, kOut>(element, x));
  }
}

}  // namespace slsam::cuda
