// Shared by the 8-row interleaved layouts (Q4_0_X8, Q8_0_X8, Q8_0_2OF4_X8, Q4_K_X8):
// repacking a matrix of plain row blocks group by group, and undoing it row
// by row. Each layout supplies only how one group is packed and one row read back.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "core/error.h"
#include "core/tensor.h"

namespace lmpress {

// `t` (type `from`, rows a multiple of 8, block_cols-column blocks of type Row)
// as `to`: pack(rows, cols, out) fills cols / block_cols Groups from 8 rows and
// returns false if they do not fit the layout.
template <class Row, class Group, class Pack>
Tensor repack_x8(const Tensor& t, DType from, DType to, Pack pack, int64_t block_cols = 32) {
  if (t.dtype != from || t.shape.size() != 2 || t.rows() % 8 || t.cols() % block_cols)
    fail("internal: {} cannot be repacked as {}", t.name, dtype_name(to));
  const int64_t rows = t.rows(), nb = t.cols() / block_cols;
  auto buf = std::make_shared<std::vector<uint8_t>>(size_t(rows / 8 * nb) * sizeof(Group));
  const auto* src = reinterpret_cast<const Row*>(t.data);
  auto* dst = reinterpret_cast<Group*>(buf->data());
  bool ok = true;
#pragma omp parallel for schedule(static) reduction(&& : ok)
  for (int64_t g = 0; g < rows / 8; g++) ok = pack(src + g * 8 * nb, t.cols(), dst + g * nb) && ok;
  if (!ok) fail("internal: {} does not fit the {} layout", t.name, dtype_name(to));
  Tensor out = t;
  out.dtype = to;
  out.data = buf->data();
  out.nbytes = buf->size();
  out.owner = buf;
  return out;
}

// The file's row blocks back: unpack_row(group, cols, r, out) writes row r (0..7) of a group.
template <class Row, class Group, class UnpackRow>
std::vector<uint8_t> unpack_x8(const Tensor& t, UnpackRow unpack_row, int64_t block_cols = 32) {
  const int64_t rows = t.rows(), nb = t.cols() / block_cols;
  std::vector<uint8_t> out(size_t(rows * nb) * sizeof(Row));
  const auto* src = reinterpret_cast<const Group*>(t.data);
  auto* dst = reinterpret_cast<Row*>(out.data());
  for (int64_t r = 0; r < rows; r++) unpack_row(src + (r / 8) * nb, t.cols(), int(r % 8), dst + r * nb);
  return out;
}

}  // namespace lmpress
