#include "core/dtype.h"

#include <algorithm>
#include <array>
#include <cctype>

#include "core/error.h"

namespace lmpress {
namespace {

// Block layouts as ggml defines them (ggml-common.h).
constexpr std::array<DTypeInfo, 48> kTypes = {{
    {DType::F32, "F32", 1, 4, true, DType::F32, 1},
    {DType::F16, "F16", 1, 2, true, DType::F16, 1},
    {DType::Q4_0, "Q4_0", 32, 18, true, DType::Q4_0, 1},
    {DType::Q4_1, "Q4_1", 32, 20, true, DType::Q4_1, 1},
    {DType::Q5_0, "Q5_0", 32, 22, true, DType::Q5_0, 1},
    {DType::Q5_1, "Q5_1", 32, 24, true, DType::Q5_1, 1},
    {DType::Q8_0, "Q8_0", 32, 34, true, DType::Q8_0, 1},
    {DType::Q8_1, "Q8_1", 32, 36, false, DType::Q8_1, 1},
    {DType::Q2_K, "Q2_K", 256, 84, true, DType::Q2_K, 1},
    {DType::Q3_K, "Q3_K", 256, 110, true, DType::Q3_K, 1},
    {DType::Q4_K, "Q4_K", 256, 144, true, DType::Q4_K, 1},
    {DType::Q5_K, "Q5_K", 256, 176, true, DType::Q5_K, 1},
    {DType::Q6_K, "Q6_K", 256, 210, true, DType::Q6_K, 1},
    {DType::Q8_K, "Q8_K", 256, 292, false, DType::Q8_K, 1},
    {DType::IQ2_XXS, "IQ2_XXS", 256, 66, true, DType::IQ2_XXS, 1},
    {DType::IQ2_XS, "IQ2_XS", 256, 74, true, DType::IQ2_XS, 1},
    {DType::IQ3_XXS, "IQ3_XXS", 256, 98, true, DType::IQ3_XXS, 1},
    {DType::IQ1_S, "IQ1_S", 256, 50, true, DType::IQ1_S, 1},
    {DType::IQ4_NL, "IQ4_NL", 32, 18, true, DType::IQ4_NL, 1},
    {DType::IQ3_S, "IQ3_S", 256, 110, true, DType::IQ3_S, 1},
    {DType::IQ2_S, "IQ2_S", 256, 82, true, DType::IQ2_S, 1},
    {DType::IQ4_XS, "IQ4_XS", 256, 136, true, DType::IQ4_XS, 1},
    {DType::I8, "I8", 1, 1, false, DType::I8, 1},
    {DType::I16, "I16", 1, 2, false, DType::I16, 1},
    {DType::I32, "I32", 1, 4, false, DType::I32, 1},
    {DType::I64, "I64", 1, 8, false, DType::I64, 1},
    {DType::F64, "F64", 1, 8, false, DType::F64, 1},
    {DType::IQ1_M, "IQ1_M", 256, 56, true, DType::IQ1_M, 1},
    {DType::BF16, "BF16", 1, 2, true, DType::BF16, 1},
    {DType::TQ1_0, "TQ1_0", 256, 54, true, DType::TQ1_0, 1},
    {DType::TQ2_0, "TQ2_0", 256, 66, true, DType::TQ2_0, 1},
    {DType::MXFP4, "MXFP4", 32, 17, true, DType::MXFP4, 1},
    {DType::LMP2, "LMP2", 256, 66, true, DType::LMP2, 1},
    {DType::F16_2OF4, "F16_2of4", 32, 36, true, DType::F16, 1},
    {DType::F16_BITMAP, "F16_bitmap", 8, 0, true, DType::F16, 1},
    {DType::Q8_0_2OF4, "Q8_0_2of4", 32, 22, true, DType::Q8_0, 1},
    {DType::Q4_0_X8, "Q4_0_x8", 32, 18, true, DType::Q4_0, 8},
    {DType::Q8_0_2OF4_X8, "Q8_0_2of4_x8", 32, 22, true, DType::Q8_0, 8},
    {DType::Q8_0_X8, "Q8_0_x8", 32, 34, true, DType::Q8_0, 8},
    {DType::Q4_K_X8, "Q4_K_x8", 256, 148, true, DType::Q4_K, 8},
    {DType::Q5_0_X8, "Q5_0_x8", 32, 22, true, DType::Q5_0, 8},
    {DType::IQ4_NL_X8, "IQ4_NL_x8", 32, 18, true, DType::IQ4_NL, 8},
    // Repacked from F32 matrices of int8 values times row scales; each group of 8 rows also has a 64-byte header.
    {DType::I8_X8, "I8_x8", 32, 32, true, DType::F32, 8},
    // No bytes of its own: two factor tensors, each written as what it is.
    {DType::LOW_RANK, "low_rank", 1, 0, true, DType::LOW_RANK, 1},
    {DType::U8, "U8", 1, 1, false, DType::U8, 1},
    {DType::MXFP4_X8, "MXFP4_x8", 32, 18, true, DType::MXFP4, 8},
    {DType::Q5_1_X8, "Q5_1_x8", 32, 24, true, DType::Q5_1, 8},
    {DType::Q4_1_X8, "Q4_1_x8", 32, 20, true, DType::Q4_1, 8},
}};

}  // namespace

std::optional<DTypeInfo> dtype_info(uint32_t ggml_type) {
  for (const auto& t : kTypes)
    if (uint32_t(t.type) == ggml_type && !is_internal_type(t.type)) return t;
  return std::nullopt;
}

namespace {
// Row of each id: ggml's ids 0..63, internal ids from kInternalTypeBase and
// lmpress's file types from kLmpressFileTypeBase, 64 slots each (hot: asked
// per matmul and per row address).
constexpr uint32_t kSlots = 64;
constexpr uint32_t slot_of(uint32_t id) {
  if (id >= kLmpressFileTypeBase) return id - kLmpressFileTypeBase < kSlots ? 2 * kSlots + (id - kLmpressFileTypeBase) : UINT32_MAX;
  if (id >= kInternalTypeBase) return id - kInternalTypeBase < kSlots ? kSlots + (id - kInternalTypeBase) : UINT32_MAX;
  return id < kSlots ? id : UINT32_MAX;
}
constexpr std::array<int8_t, 3 * kSlots> kIndex = [] {
  std::array<int8_t, 3 * kSlots> idx{};
  for (auto& i : idx) i = -1;
  for (size_t i = 0; i < kTypes.size(); i++) idx[slot_of(uint32_t(kTypes[i].type))] = int8_t(i);
  return idx;
}();
}  // namespace

const DTypeInfo& dtype_info(DType t) {
  const uint32_t id = uint32_t(t);
  const uint32_t slot = slot_of(id);
  if (slot < kIndex.size() && kIndex[slot] >= 0) return kTypes[size_t(kIndex[slot])];
  fail("internal: unknown dtype id {}", id);
}

const char* dtype_name(DType t) { return dtype_info(t).name; }

std::optional<DType> dtype_from_name(std::string_view name) {
  std::string up(name);
  std::transform(up.begin(), up.end(), up.begin(), [](unsigned char c) { return std::toupper(c); });
  for (const auto& t : kTypes)
    if (up == t.name && !is_internal_type(t.type)) return t.type;
  return std::nullopt;
}

uint64_t row_bytes(DType t, uint64_t n) {
  const auto& info = dtype_info(t);
  if (is_row_indexed(t)) fail("internal: rows of {} vary in size", info.name);
  if (t == DType::LOW_RANK) fail("internal: a {} tensor stores no rows (its factors do)", info.name);
  if (n % info.block_elems != 0)
    fail("row of {} elements is not a multiple of the {} block size {}", n, info.name, info.block_elems);
  return checked_mul(n / info.block_elems, info.block_bytes, "row size");
}

}  // namespace lmpress
