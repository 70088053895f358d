// The codebooks of ggml's IQ1/IQ2/IQ3 types (data in kernels/iq_grids.cc,
// generated from ggml-common.h by scripts/gen-iq-grids.py) and their sign
// tables.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>

namespace lmpress {

// 8 unsigned magnitudes per entry, one per byte (value j in bits 8j..8j+7).
extern const uint64_t kIq2xxsGrid[256];
extern const uint64_t kIq2xsGrid[512];
extern const uint64_t kIq2sGrid[1024];
// 4 unsigned magnitudes per entry.
extern const uint32_t kIq3xxsGrid[256];
extern const uint32_t kIq3sGrid[512];
// 8 values of -1, 0 or 1 per entry (signed bytes).
extern const uint64_t kIq1sGrid[2048];

// ggml's ksigns_iq2xs: 7 stored sign bits complete to 8 with even parity
// (the eighth sign is implied), bit j set: value j negative.
constexpr std::array<uint8_t, 128> kIqSigns = [] {
  std::array<uint8_t, 128> t{};
  for (int i = 0; i < 128; i++) t[std::size_t(i)] = uint8_t(i | ((__builtin_popcount(unsigned(i)) & 1) << 7));
  return t;
}();

// Byte j of a grid entry.
inline int grid_byte(uint64_t entry, int j) { return int((entry >> (8 * j)) & 0xff); }

}  // namespace lmpress
