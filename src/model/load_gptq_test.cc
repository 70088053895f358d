#include "model/load_gptq.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <random>

#include "core/error.h"
#include "core/fp16.h"
#include "kernels/to_f32.h"

namespace lmpress {
namespace {

// A tensor owning a copy of `v`, stored as `t`.
template <typename T>
Tensor owned(const std::string& name, DType t, std::vector<int64_t> shape, const std::vector<T>& v) {
  auto buf = std::make_shared<std::vector<T>>(v);
  Tensor out;
  out.name = name;
  out.dtype = t;
  out.shape = std::move(shape);
  out.data = reinterpret_cast<const uint8_t*>(buf->data());
  out.nbytes = buf->size() * sizeof(T);
  out.owner = buf;
  return out;
}

// One linear quantized to `type` (RTN on random weights) and stored as
// AutoGPTQ's four tensors, f16 scales as in real checkpoints; with
// `shuffle`, groups in a permuted column order as act-order leaves them.
Tensor load_linear(const std::string& type, bool shuffle, std::vector<float>* want) {
  const int64_t rows = 32, cols = 128;
  std::mt19937 rng(11);
  std::normal_distribution<float> nd;
  std::vector<float> W(size_t(rows * cols));
  for (auto& w : W) w = nd(rng);
  const IntGroupSpec s = *parse_int_group_type(type);
  IntGroupTensor t = int_group_rtn(W.data(), rows, cols, s, nullptr, {});
  if (shuffle) std::shuffle(t.g_idx.begin(), t.g_idx.end(), rng);
  *want = t.dequantize();
  const GptqPacked p = pack_gptq(t);
  std::vector<uint16_t> scales(p.scales.size());
  for (size_t i = 0; i < scales.size(); i++) scales[i] = f32_to_f16(p.scales[i]);
  const std::vector<Tensor> in{
      owned("l.qweight", DType::I32, {int64_t(p.qweight.size()) / rows, rows}, p.qweight),
      owned("l.qzeros", DType::I32, {t.n_groups, int64_t(p.qzeros.size()) / t.n_groups}, p.qzeros),
      owned("l.scales", DType::F16, {t.n_groups, rows}, scales),
      owned("l.g_idx", DType::I32, {cols}, p.g_idx),
  };
  auto out = dequantize_int_checkpoint_tensors(in, {IntCheckpoint::Gptq, s}, "test");
  EXPECT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].name, "l.weight");
  return out[0];
}

// Linears whose groups fit 32-value blocks become Q4_0 (symmetric 4-bit) or
// Q8_0 (any other ≤ 4-bit, symmetric 8-bit) holding exactly the checkpoint's
// values; the rest stay f32. Either way the values are the checkpoint's.
TEST(LoadGptq, ExactBlocksWhereTheGroupsAllow) {
  const struct {
    const char* type;
    bool shuffle;
    DType want;
  } cases[] = {
      {"int4-g64", false, DType::Q4_0},      {"int4-g32-asym", false, DType::Q8_0},
      {"int3-g128", false, DType::Q8_0},     {"int2-ch", false, DType::Q8_0},
      {"int8-g32", false, DType::Q8_0},      {"int4-g64", true, DType::F32},  // act-order column order
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(std::string(c.type) + (c.shuffle ? " shuffled" : ""));
    std::vector<float> want;
    const Tensor w = load_linear(c.type, c.shuffle, &want);
    EXPECT_EQ(w.dtype, c.want);
    EXPECT_EQ(w.shape, (std::vector<int64_t>{32, 128}));
    EXPECT_EQ(to_f32(w), want);
  }
}

// The scales' group count must be the one group_size gives, whatever g_idx says.
TEST(LoadGptq, ScalesMustMatchGroupSize) {
  const int64_t rows = 32, cols = 128;
  std::vector<float> W(size_t(rows * cols), 0.5f);
  const IntGroupTensor t = int_group_rtn(W.data(), rows, cols, *parse_int_group_type("int4-g32"), nullptr, {});
  const GptqPacked p = pack_gptq(t);
  const std::vector<Tensor> in{
      owned("l.qweight", DType::I32, {int64_t(p.qweight.size()) / rows, rows}, p.qweight),
      owned("l.qzeros", DType::I32, {t.n_groups, int64_t(p.qzeros.size()) / t.n_groups}, p.qzeros),
      owned("l.scales", DType::F32, {t.n_groups, rows}, p.scales),
      owned("l.g_idx", DType::I32, {cols}, p.g_idx),
  };
  EXPECT_EQ(dequantize_int_checkpoint_tensors(in, {IntCheckpoint::Gptq, *parse_int_group_type("int4-g32")}, "m").size(), 1u);
  for (const char* type : {"int4-ch", "int4-g64"}) {
    try {
      dequantize_int_checkpoint_tensors(in, {IntCheckpoint::Gptq, *parse_int_group_type(type)}, "m");
      ADD_FAILURE() << type;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("m: l.scales has 4 groups (rows), but quantization_config.group_size"),
                std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace lmpress
