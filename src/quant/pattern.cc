#include "quant/pattern.h"

#include <fmt/format.h>

#include "core/error.h"

namespace lmpress {

std::string SparsityPattern::name() const {
  return is_nm() ? fmt::format("{}:{}", n, m) : fmt::format("{:g}%", 100 * sparsity);
}

SparsityPattern SparsityPattern::unstructured(double s) {
  if (!(s >= 0 && s < 1)) fail("sparsity {} is out of range (0 <= s < 1)", s);
  SparsityPattern p;
  p.sparsity = s;
  return p;
}

SparsityPattern SparsityPattern::parse_nm(const std::string& s) {
  int n = 0, m = 0;
  char extra = 0;
  if (std::sscanf(s.c_str(), "%d:%d%c", &n, &m, &extra) != 2 || n <= 0 || m <= n || m > 64)
    fail("N:M pattern '{}' is invalid (expected N:M with 0 < N < M <= 64, e.g. 2:4)", s);
  SparsityPattern p;
  p.n = n;
  p.m = m;
  return p;
}

}  // namespace lmpress
