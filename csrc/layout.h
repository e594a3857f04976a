// The one precondition of every loop here: corresponding tensors share dtype, shape and
// strides and are dense, so element i of one is element i of the others in memory order.
// Callers that fail it take the reference path (the Python side checks the returned bool).
#pragma once

#include <initializer_list>

#include "ops.h"

namespace slsam {

inline bool laid_out_alike(const at::Tensor& a, const at::Tensor& b) {
  return a.scalar_type() == b.scalar_type() && a.sizes() == b.sizes() &&
         a.strides() == b.strides() && a.device() == b.device() &&
         b.is_non_overlapping_and_dense();
}

inline bool laid_out_alike(std::initializer_list<const TensorList*> lists) {
  const TensorList& first = **lists.begin();
  for (const TensorList* list : lists) {
    if (list->size() != first.size()) {
      return false;
    }
    for (size_t i = 0; i < first.size(); ++i) {
      if (!laid_out_alike(first[i], (*list)[i])) {
        return false;
      }
    }
  }
  return true;
}

}  // namespace slsam
