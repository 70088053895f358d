#include "core/dtype.h"

#include <algorithm>
#include <array>
#include <cctype>

#include "core/error.h"

namespace lmpress {
namespace {

// Block layouts as ggml defines them (ggml-common.h).
constexpr std::array<DTypeInfo, 29> kTypes = {{
    {DType::F32, "F32", 1, 4, true},
    {DType::F16, "F16", 1, 2, true},
    {DType::Q4_0, "Q4_0", 32, 18, true},
    {DType::Q4_1, "Q4_1", 32, 20, true},
    {DType::Q5_0, "Q5_0", 32, 22, true},
    {DType::Q5_1, "Q5_1", 32, 24, true},
    {DType::Q8_0, "Q8_0", 32, 34, true},
    {DType::Q8_1, "Q8_1", 32, 36, false},
    {DType::Q2_K, "Q2_K", 256, 84, true},
    {DType::Q3_K, "Q3_K", 256, 110, true},
    {DType::Q4_K, "Q4_K", 256, 144, true},
    {DType::Q5_K, "Q5_K", 256, 176, true},
    {DType::Q6_K, "Q6_K", 256, 210, true},
    {DType::Q8_K, "Q8_K", 256, 292, false},
    {DType::IQ4_NL, "IQ4_NL", 32, 18, true},
    {DType::I8, "I8", 1, 1, false},
    {DType::I16, "I16", 1, 2, false},
    {DType::I32, "I32", 1, 4, false},
    {DType::I64, "I64", 1, 8, false},
    {DType::F64, "F64", 1, 8, false},
    {DType::BF16, "BF16", 1, 2, true},
    {DType::F16_2OF4, "F16_2of4", 32, 36, true},
    {DType::F16_BITMAP, "F16_bitmap", 8, 0, true},
    {DType::Q8_0_2OF4, "Q8_0_2of4", 32, 22, true},
    {DType::Q4_0_X8, "Q4_0_x8", 32, 18, true},
    {DType::Q8_0_2OF4_X8, "Q8_0_2of4_x8", 32, 22, true},
    {DType::Q8_0_X8, "Q8_0_x8", 32, 34, true},
    {DType::Q4_K_X8, "Q4_K_x8", 256, 148, true},
    {DType::Q5_0_X8, "Q5_0_x8", 32, 22, true},
}};

}  // namespace

std::optional<DTypeInfo> dtype_info(uint32_t ggml_type) {
  for (const auto& t : kTypes)
    if (uint32_t(t.type) == ggml_type && !is_internal_type(t.type)) return t;
  return std::nullopt;
}

const DTypeInfo& dtype_info(DType t) {
  for (const auto& i : kTypes)
    if (i.type == t) return i;
  fail("internal: unknown dtype id {}", uint32_t(t));
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
  if (n % info.block_elems != 0)
    fail("row of {} elements is not a multiple of the {} block size {}", n, info.name, info.block_elems);
  return checked_mul(n / info.block_elems, info.block_bytes, "row size");
}

}  // namespace lmpress
