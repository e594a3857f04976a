// The SL-SAM bandit update on the host, in double: the reference's operations
// (slsam_kernels/backends/reference/bandit.py) in the reference's order, one loop each instead
// of one torch op each (about 35 ops of ~7 us apiece at 1,000 arms). Only exp may differ from
// torch's, by an ulp of a double, which the fp32 result almost never shows.
#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "../ops.h"

namespace slsam::cpu {
namespace {

constexpr double kProbFloor = 1e-8;
constexpr double kSuffixSumFloor = 1e-5;

// torch's max and clamp propagate NaN; std::max and std::clamp do not.
double nan_max(double a, double b) { return std::isnan(a) || a > b ? a : b; }
double nan_min(double a, double b) { return std::isnan(a) || a < b ? a : b; }
double nan_clamp(double x, double lo, double hi) {
  return std::isnan(x) ? x : std::min(std::max(x, lo), hi);
}

// torch.argsort(v, descending=True, stable=True): NaN ranks above every number.
std::vector<int64_t> descending_order(const std::vector<double>& v) {
  std::vector<int64_t> order(v.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    return (std::isnan(v[a]) && !std::isnan(v[b])) || v[a] > v[b];
  });
  return order;
}

// Exp3.M's capped projection onto sum = budget, each entry at most 1.
void capped_projection(std::vector<double>& v, double budget) {
  const int64_t n = static_cast<int64_t>(v.size());
  const std::vector<int64_t> order = descending_order(v);
  std::vector<double> suffix(n);
  double running = 0.0;
  for (int64_t j = n - 1; j >= 0; --j) {
    running += v[order[j]];
    suffix[j] = nan_max(running, kSuffixSumFloor);
  }
  int64_t first = n;
  for (int64_t j = 0; j < n; ++j) {
    if (v[order[j]] * (budget - static_cast<double>(j)) <= suffix[j]) {
      first = j;
      break;
    }
  }
  for (int64_t j = 0; j < first; ++j) {
    v[order[j]] = 1.0;
  }
  if (first < n) {
    const double remaining = budget - static_cast<double>(first);
    const double sum = suffix[first];
    for (int64_t j = first; j < n; ++j) {
      v[order[j]] = v[order[j]] * remaining / sum;
    }
  }
}

}  // namespace

at::Tensor bandit_update(const at::Tensor& probs, const at::Tensor& active_norms,
                         const at::Tensor& active_idx, double budget, double lr, double p_min,
                         bool scale_free, double exploration) {
  const int64_t n = probs.numel();
  const int64_t k = active_idx.numel();
  const float* p32 = probs.data_ptr<float>();
  const float* norms = active_norms.data_ptr<float>();
  const int64_t* idx = active_idx.data_ptr<int64_t>();
  for (int64_t a = 0; a < k; ++a) {
    TORCH_CHECK(idx[a] >= 0 && idx[a] < n, "active index ", idx[a], " outside [0, ", n, ")");
  }
  std::vector<double> v(p32, p32 + n);
  std::vector<double> loss(k);
  if (scale_free) {
    // q = (n / p)^2, l = 1 - q / max q (0 for every arm when max q is not positive)
    double top = -std::numeric_limits<double>::infinity();
    for (int64_t a = 0; a < k; ++a) {
      const double ratio = norms[a] / v[idx[a]];
      loss[a] = ratio * ratio;
      top = nan_max(top, loss[a]);
    }
    for (int64_t a = 0; a < k; ++a) {
      loss[a] = top > 0 ? 1 - loss[a] / top : 0.0;
    }
  } else {
    // r = -(n / p)^2 + (max n / p_min)^2, l = r - min r
    double largest = -std::numeric_limits<double>::infinity();
    for (int64_t a = 0; a < k; ++a) {
      largest = nan_max(largest, static_cast<double>(norms[a]));
    }
    const double offset = (largest / p_min) * (largest / p_min);
    double lowest = std::numeric_limits<double>::infinity();
    for (int64_t a = 0; a < k; ++a) {
      const double ratio = norms[a] / v[idx[a]];
      loss[a] = -(ratio * ratio) + offset;
      lowest = nan_min(lowest, loss[a]);
    }
    for (int64_t a = 0; a < k; ++a) {
      loss[a] -= lowest;
    }
  }
  std::vector<double> p_active(k);
  for (int64_t a = 0; a < k; ++a) {
    p_active[a] = v[idx[a]];
  }
  for (int64_t a = 0; a < k; ++a) {
    v[idx[a]] = p_active[a] * std::exp(-lr * loss[a] / p_active[a]);
  }
  capped_projection(v, budget);
  const double keep = 1 - exploration;
  const double floor = exploration * (budget / static_cast<double>(n));
  at::Tensor out = at::empty({n}, at::kFloat);
  float* o = out.data_ptr<float>();
  for (int64_t i = 0; i < n; ++i) {
    o[i] = static_cast<float>(nan_clamp(keep * v[i] + floor, kProbFloor, 1.0));
  }
  return out;
}

}  // namespace slsam::cpu
