#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAGuard.h>

#include "../common/elementwise.h"
#include "multi_tensor.cuh"

namespace slsam::cuda {
namespace {

// Lists: 0 params, 1 grads, 2 backups. Streams in: w, g; out: backup (w's bits), w.
template <typename T, bool kAdaptive>
struct Perturb {
  const float* scales;

  __device__ void operator()(const TensorTable& table, const Chunk& chunk) const {
    const int64_t t = chunk.tensor;
    const float scale = scales[table.position(t)];
    T* w = table.ptr<T>(0, t);
    const Streams<T, 2, 2> streams{{w, table.ptr<const T>(1, t)}, {table.ptr<T>(2, t), w}};
    transform(chunk, streams, [&](const T (&in)[2], T (&out)[2]) {
      out[0] = in[0];
      out[1] = from_float<T>(
          perturbed(static_cast<float>(in[0]), static_cast<float>(in[1]), scale, kAdaptive));
    });
  }
};

// Lists: 0 params, 1 backups. Copies bits as unsigned integers of the element's width, so NaN
// payloads survive too.
template <typename Bits>
struct CopyBits {
  __device__ void operator()(const TensorTable& table, const Chunk& chunk) const {
    const Streams<Bits, 1, 1> streams{{table.ptr<const Bits>(1, chunk.tensor)},
                                      {table.ptr<Bits>(0, chunk.tensor)}};
    transform(chunk, streams, [](const Bits (&in)[1], Bits (&out)[1]) { out[0] = in[0]; });
  }
};

}  // namespace

void perturb_(const TensorList& params, const TensorList& grads, const TensorList& backups,
              const at::Tensor& scales, bool adaptive) {
  const c10::cuda::CUDAGuard guard(params[0].device());
  for (const auto& positions : group_by_dtype(params)) {
    const LaunchTable table = make_table(
        {pointers_of(params, positions), pointers_of(grads, positions),
         pointers_of(backups, positions)},
        numels_of(params, positions), positions, params[0].device());
    AT_DISPATCH_FLOATING_TYPES_AND2(
        at::kBFloat16, at::kHalf, params[positions[0]].scalar_type(), "perturb_", [&] {
          const float* s = scales.data_ptr<float>();
          if (adaptive) {
            for_each_chunk(table, Perturb<scalar_t, true>{s});
          } else {
            for_each_chunk(table, Perturb<scalar_t, false>{s});
          }
        });
  }
}

void restore_(const TensorList& params, const TensorList& backups) {
  const c10::cuda::CUDAGuard guard(params[0].device());
  for (const auto& positions : group_by_dtype(params)) {
    const LaunchTable table =
        make_table({pointers_of(params, positions), pointers_of(backups, positions)},
                   numels_of(params, positions), positions, params[0].device());
    switch (params[positions[0]].element_size()) {
      case 2:
        for_each_chunk(table, CopyBits<uint16_t>{});
        break;
      case 4:
        for_each_chunk(table, CopyBits<uint32_t>{});
        break;
      default:
        for_each_chunk(table, CopyBits<uint64_t>{});
        break;
    }
  }
}

}  // namespace slsam::cuda
