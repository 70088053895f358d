#include "quant/block_grid.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "kernels/blocks.h"
#include "quant/quantize.h"
#include "test_util.h"

namespace lmpress {
namespace {

// For every block of ggml's own quantized data: the grid decodes each element
// exactly as the dequantizer does, the nearest level of that value is its level,
// and packing those levels rebuilds the original bytes.
TEST(BlockGrid, DecodesAndRepacksGgmlBlocks) {
  const test::GgmlBlocks find;
  for (const char* name : {"Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL",
                           "IQ4_XS", "TQ1_0", "TQ2_0", "MXFP4"}) {
    for (const char* prefix : {"q.", "qw."}) {
      SCOPED_TRACE(std::string(prefix) + name);
      const Tensor& q = find(std::string(prefix) + name);
      const auto& info = dtype_info(q.dtype);
      const int64_t nblocks = q.numel() / info.block_elems;
      for (int64_t b = 0; b < nblocks; b++) {
        const uint8_t* block = q.data + b * info.block_bytes;
        float want[256];
        ASSERT_TRUE(dequantize_row(q.dtype, block, info.block_elems, want));
        BlockGrid g;
        block_grid(q.dtype, block, g);
        ASSERT_EQ(g.n, info.block_elems);
        uint8_t levels[256];
        for (int e = 0; e < g.n; e++) {
          levels[e] = uint8_t(g.nearest_level(e, want[e]));
          ASSERT_NEAR(g.value(e, levels[e]), want[e], 1e-6f * (1 + std::fabs(want[e]))) << "block " << b << " el " << e;
        }
        std::vector<uint8_t> repacked(block, block + info.block_bytes);
        pack_levels(q.dtype, levels, repacked.data());
        // Elements of zero scale have no defined level; compare decoded values instead of bytes there.
        float got[256];
        ASSERT_TRUE(dequantize_row(q.dtype, repacked.data(), info.block_elems, got));
        for (int e = 0; e < g.n; e++) ASSERT_EQ(got[e], want[e]) << "block " << b << " el " << e;
        bool any_zero_scale = false;
        for (int e = 0; e < g.n; e++) any_zero_scale |= g.scale[e] == 0;
        if (!any_zero_scale) {
          EXPECT_EQ(0, std::memcmp(repacked.data(), block, info.block_bytes)) << "block " << b;
        }
      }
    }
  }
}

}  // namespace
}  // namespace lmpress
