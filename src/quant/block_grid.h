// The values one block can represent once its scales are fixed. Calibrated
// quantizers (GPTQ) choose a block's scales first, then pick each element's
// level on that grid one column at a time, and finally pack the levels.
#pragma once
#include <cstdint>

#include "core/dtype.h"

namespace lmpress {

// The level nearest to x on one element's grid: scale·v + offset with v the
// level, or table[level] for a non-linear format; 0 (or the table's zero) when
// the scale is 0, as every level then decodes to the offset.
int nearest_grid_level(float scale, float offset, int n_levels, const int8_t* table, float x);
inline float grid_value(float scale, float offset, const int8_t* table, int level) {
  return scale * float(table ? table[level] : level) + offset;
}

// Element e of the block decodes to scale[e] * v + offset[e], where v is the
// level (0 .. n_levels-1), or table[level] (sorted) for non-linear formats (IQ4_NL, IQ4_XS, MXFP4).
struct BlockGrid {
  int n = 0;  // elements in the block
  int n_levels = 0;
  const int8_t* table = nullptr;
  float scale[256];
  float offset[256];

  int nearest_level(int e, float x) const { return nearest_grid_level(scale[e], offset[e], n_levels, table, x); }
  float value(int e, int level) const { return grid_value(scale[e], offset[e], table, level); }
};

// Whether block_grid and pack_levels know t (the block types GPTQ and AWQ can target).
bool has_block_grid(DType t);
// Reads the grid of one block of type t (a type with has_block_grid).
void block_grid(DType t, const uint8_t* block, BlockGrid& g);
// Writes levels (one per element, block order) into a block, keeping its scales.
void pack_levels(DType t, const uint8_t* levels, uint8_t* block);

}  // namespace lmpress
