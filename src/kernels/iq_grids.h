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

// IQ2_XS / IQ2_S's scale byte s of a 32-value chunk as 16 lanes of int16, one
// per product pair: 2·(s & 15) + 1 for values 0-15 (lanes 0-7), 2·(s >> 4) + 1
// for values 16-31: one 32-byte load for the kernels' madd.
alignas(32) inline constexpr std::array<std::array<int16_t, 16>, 256> kIqScalePairs = [] {
  std::array<std::array<int16_t, 16>, 256> t{};
  for (int s = 0; s < 256; s++)
    for (int l = 0; l < 16; l++) t[std::size_t(s)][std::size_t(l)] = int16_t(2 * (l < 8 ? s & 15 : s >> 4) + 1);
  return t;
}();

// Byte j of a grid entry.
inline int grid_byte(uint64_t entry, int j) { return int((entry >> (8 * j)) & 0xff); }

}  // namespace lmpress
