// Repacking sparse weights at load into the layouts whose kernels skip the
// zeros: 2:4 patterns into F16_2OF4 or Q8_0_2OF4, other F16 matrices sparse
// enough to pay into F16_BITMAP. Lossless; files on disk stay plain F16/Q8_0.
#pragma once
#include <cstdint>

#include "model/model.h"

namespace lmpress {

// Largest share of nonzero weights at which the bitmap layout decodes faster
// than dense F16 (bench/sparse-speed.sh measures both sides of it).
constexpr double kBitmapMaxDensity = 0.5;

struct SparseRepack {
  int64_t n_2of4 = 0;    // matrices repacked into F16_2OF4 or Q8_0_2OF4
  int64_t n_bitmap = 0;  // into F16_BITMAP
  int64_t total() const { return n_2of4 + n_bitmap; }
};

// Repacks the blocks' F16 and Q8_0 weight matrices that are 2:4-sparse (F16:
// columns a multiple of 32), and F16 ones at most kBitmapMaxDensity dense
// (columns a multiple of 8).
SparseRepack repack_sparse(Model& m);

}  // namespace lmpress
