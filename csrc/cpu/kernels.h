// Block kernels: the inner loops over one contiguous block of one tensor. One overload per
// dtype (float, double, c10::BFloat16, c10::Half); callers pick it with AT_DISPATCH.
#pragma once

#include <cstdint>

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include "../common/elementwise.h"

namespace slsam::cpu {

#define SLSAM_DECLARE_BLOCK_KERNELS(T)                                                        \
  float sqnorm_block(const T* g, int64_t n);                                                 \
  float weighted_sqnorm_block(const T* g, const T* w, int64_t n);                            \
  void perturb_block(T* w, const T* g, T* backup, int64_t n, float scale, bool adaptive);    \
  void adam_block(T* w, const T* g, const T* backup, T* exp_avg, T* exp_avg_sq, int64_t n,    \
                  const AdamScalars& s);                                                     \
  /* momentum_buffer is null when momentum is 0 */                                           \
  void sgd_block(T* w, const T* g, const T* backup, T* momentum_buffer, int64_t n,           \
                 const SgdScalars& s);

SLSAM_DECLARE_BLOCK_KERNELS(float)
SLSAM_DECLARE_BLOCK_KERNELS(double)
SLSAM_DECLARE_BLOCK_KERNELS(c10::BFloat16)
SLSAM_DECLARE_BLOCK_KERNELS(c10::Half)

#undef SLSAM_DECLARE_BLOCK_KERNELS

// Whether the fp16 kernels (norms, perturbation, Adam/SGD steps) and the bf16 Adam/SGD steps
// take their eight-lane loops (on CPUs that have AVX2, FMA and F16C; both forms give the same
// bits). Returns the setting before; for tests and benchmarks.
bool use_vec8_kernels(bool enabled);

}  // namespace slsam::cpu
