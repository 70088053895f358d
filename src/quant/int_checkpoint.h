// The int-N checkpoint layouts besides GPTQ's (int_group.h) that GPU engines
// load, packed from and unpacked to IntGroupTensor levels:
// - AutoAWQ "gemm" (docs/awq-format.md): 4-bit levels packed 8 per int32 along
//   the output dimension in AWQ's nibble order, zero points as is, no g_idx.
// - compressed-tensors "pack-quantized" (docs/compressed-tensors-format.md):
//   levels (signed value + 2^(bits−1), which are lmpress's levels) packed
//   along the input dimension, little-endian; zero points packed along the
//   output dimension (asymmetric only); scales [out, groups]; g_idx with act-order.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "quant/int_group.h"

namespace lmpress {

enum class IntCheckpoint { Gptq, Awq, CompressedTensors };
// "gptq", "awq", "compressed-tensors"; parse fails naming `option`.
const char* int_checkpoint_name(IntCheckpoint f);
IntCheckpoint parse_int_checkpoint(const std::string& name, const std::string& option);
// Fails unless spec (and its act-order) can be written in format f.
void check_int_checkpoint(IntCheckpoint f, const IntGroupSpec& spec);

struct AwqPacked {
  std::vector<int32_t> qweight;  // [cols, rows / 8]
  std::vector<int32_t> qzeros;   // [n_groups, rows / 8]
  std::vector<float> scales;     // [n_groups, rows]
};
AwqPacked pack_awq(const IntGroupTensor& t);
IntGroupTensor unpack_awq(const AwqPacked& p, const IntGroupSpec& s, int64_t rows, int64_t cols, const std::string& what);

struct CtPacked {
  std::vector<int32_t> weight_packed;  // [rows, ceil(cols / per_word)]
  std::vector<int32_t> zero_point;     // [ceil(rows / per_word), n_groups]; empty when symmetric
  std::vector<float> scale;            // [rows, n_groups]
  std::vector<int32_t> g_idx;          // [cols] with act-order, else empty
};
CtPacked pack_compressed_tensors(const IntGroupTensor& t);
IntGroupTensor unpack_compressed_tensors(const CtPacked& p, const IntGroupSpec& s, int64_t rows, int64_t cols,
                                         const std::string& what);

}  // namespace lmpress
