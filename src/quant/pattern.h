// What a pruning run asks for: a fraction of weights (unstructured), or an
// N:M pattern (semi-structured: at most N nonzero weights in every M
// consecutive weights of a row, the layout sparse tensor cores accelerate;
// 2:4 and 4:8 are 50% sparse).
#pragma once
#include <cmath>
#include <cstdint>
#include <string>

namespace lmpress {

struct SparsityPattern {
  double sparsity = 0;  // unstructured: fraction of zeros
  int n = 0, m = 0;     // N:M when m > 0

  bool is_nm() const { return m > 0; }
  int zeros_per_group() const { return m - n; }
  double fraction() const { return is_nm() ? double(m - n) / m : sparsity; }
  std::string name() const;

  static SparsityPattern unstructured(double s);
  // "2:4", "4:8", ...: 0 < N < M <= 64.
  static SparsityPattern parse_nm(const std::string& s);
};

// Zeros for a group of `count` weights that follows `before` weights of the
// same selection: cumulative rounding, so that consecutive groups add up to
// round(s · total) exactly.
inline int64_t zeros_for(double s, int64_t before, int64_t count) {
  return std::llround(s * double(before + count)) - std::llround(s * double(before));
}

}  // namespace lmpress
