// Element types of stored tensors. Values follow ggml's type ids so that GGUF
// files map directly; block-quantized types are added with their kernels.
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace lmpress {

enum class DType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  IQ2_XXS = 16,
  IQ2_XS = 17,
  IQ3_XXS = 18,
  IQ1_S = 19,
  IQ4_NL = 20,
  IQ3_S = 21,
  IQ2_S = 22,
  IQ4_XS = 23,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  IQ1_M = 29,
  BF16 = 30,
  TQ1_0 = 34,
  TQ2_0 = 35,
  MXFP4 = 39,
  // lmpress's own file types, from kLmpressFileTypeBase: ids far above ggml's
  // (which count up from 0 and are under 64), so no ggml type will ever take
  // one; llama.cpp refuses them as unknown.
  LMP2 = 0x4C4D0001,  // 2-bit Hadamard-rotated E8P codebook (kernels/lmp2.h)
  // lmpress's own in-memory storage types (ids from kInternalTypeBase, never
  // read from or written to files): weights repacked at load.
  F16_2OF4 = 1000,    // 2:4-sparse F16: per 32 weights, 16 kept values + 2-bit positions (src/kernels/sparse24.h)
  F16_BITMAP = 1001,  // unstructured-sparse F16: a bit per weight + the kept values; rows vary in size (src/kernels/bitmap.h)
  Q8_0_2OF4 = 1002,   // 2:4-sparse Q8_0: per 32 weights, the scale, 16 kept int8 values + 2-bit positions (src/kernels/sparse24.h)
  Q4_0_X8 = 1003,     // Q4_0 with groups of 8 rows interleaved per block (src/kernels/q4_0x8.h)
  Q8_0_2OF4_X8 = 1004,  // Q8_0_2OF4 with groups of 8 rows interleaved per block (src/kernels/q8_0_2of4x8.h)
  Q8_0_X8 = 1005,       // Q8_0 with groups of 8 rows interleaved per block (src/kernels/q8_0x8.h)
  Q4_K_X8 = 1006,       // Q4_K with groups of 8 rows interleaved per block (src/kernels/q4_kx8.h)
  Q5_0_X8 = 1007,       // Q5_0 with groups of 8 rows interleaved per block (src/kernels/q5_0x8.h)
  IQ4_NL_X8 = 1008,     // IQ4_NL with groups of 8 rows interleaved per block (src/kernels/iq4_nlx8.h)
  I8_X8 = 1009,         // W8A8: int8 rows with a scale each, groups of 8 interleaved (src/kernels/i8x8.h)
  LOW_RANK = 1010,      // a factorized linear B·A: data is the pair of factor tensors (src/core/low_rank_tensor.h)
  U8 = 1011,            // safetensors' U8 (gpt-oss's MXFP4 blocks and scales), bytes only: ggml has no such type
  MXFP4_X8 = 1012,      // MXFP4 with groups of 8 rows interleaved per block, f16 scales (src/kernels/iq4_nlx8.h)
  Q5_1_X8 = 1013,       // Q5_1 with groups of 8 rows interleaved per block (src/kernels/q5_0x8.h)
  Q4_1_X8 = 1014,       // Q4_1 with groups of 8 rows interleaved per block (src/kernels/q4_0x8.h)
};
constexpr uint32_t kInternalTypeBase = 1000;
constexpr uint32_t kLmpressFileTypeBase = 0x4C4D0000;  // "LM": lmpress's file types (LMP2, ...)
inline bool is_internal_type(DType t) { return uint32_t(t) >= kInternalTypeBase && uint32_t(t) < kLmpressFileTypeBase; }
// One row per storage type (ggml's type_traits): what any layer may ask of a
// type without knowing its kernels (those are in kernels/).
struct DTypeInfo {
  DType type;
  const char* name;
  uint32_t block_elems;  // elements per block (1 for plain types)
  uint32_t block_bytes;  // bytes per block; 0 for row-indexed types (rows of varying size)
  bool supported;        // lmpress can compute with it today
  DType file_type;       // what it is written to files as (itself for file types)
  uint32_t interleave;   // rows stored interleaved per group (1: each row contiguous)
};

// Info for a ggml type id, or nullopt for an id lmpress does not know (and
// for lmpress's internal types, which no file may contain).
std::optional<DTypeInfo> dtype_info(uint32_t ggml_type);
const DTypeInfo& dtype_info(DType t);
const char* dtype_name(DType t);
// Parses "f32", "F16", "bf16", ... (case-insensitive).
std::optional<DType> dtype_from_name(std::string_view name);
// F32, F16 or BF16: element-wise float storage (not a block format).
inline bool is_float_type(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }
// Rows of varying size, found through an index at the start of the tensor (row_data in core/tensor.h).
inline bool is_row_indexed(DType t) { return t == DType::F16_BITMAP; }
// The file type an internal type was repacked from (t itself for file types).
inline DType file_type(DType t) { return dtype_info(t).file_type; }
// Groups of rows stored interleaved: no row is contiguous, so rows are reached
// through to_f32 or the type's own kernels, never through RowAddress.
inline bool is_row_interleaved(DType t) { return dtype_info(t).interleave > 1; }
// Bytes needed for one row of n elements; throws if n is not a multiple of the
// block size or the type is row-indexed.
uint64_t row_bytes(DType t, uint64_t n);

}  // namespace lmpress
