#include "sparse/repack.h"

#include <gtest/gtest.h>

#include <cmath>
#include <ostream>
#include <tuple>

#include "model/export.h"
#include "model/forward.h"
#include "test_util.h"

namespace lmpress {
namespace {

struct RepackCase {
  const char* prune;  // lmpress prune options
  DType layout;       // what the pruned F16 matrices become at load
};

void PrintTo(const RepackCase& c, std::ostream* os) { *os << "prune " << c.prune << " -> " << dtype_name(c.layout); }

// Logits of the same tokens through the prompt path (one batch) and the
// decode path (token by token) agree between a and b.
void expect_same_logits(const Model& a_model, const Model& b_model, double tol) {
  const std::vector<int32_t> toks{1, 418, 655, 2489, 373, 263, 2126, 341};
  const int64_t V = a_model.cfg.n_vocab;
  for (bool prompt : {true, false}) {
    // f32 caches: f16 rounding of keys and values would amplify the float
    // summation-order differences of the two layouts' kernels.
    InferenceState a(a_model, 16, 512, KvType::F32), b(b_model, 16, 512, KvType::F32);
    std::vector<float> la(toks.size() * size_t(V)), lb(la.size());
    if (prompt) {
      a.eval(toks.data(), int64_t(toks.size()), la.data(), true);
      b.eval(toks.data(), int64_t(toks.size()), lb.data(), true);
    } else {
      for (size_t i = 0; i < toks.size(); i++) {
        a.eval(&toks[i], 1, la.data() + i * size_t(V), false);
        b.eval(&toks[i], 1, lb.data() + i * size_t(V), false);
      }
    }
    double worst = 0;
    for (size_t i = 0; i < la.size(); i++) worst = std::max(worst, double(std::fabs(la[i] - lb[i])));
    EXPECT_LT(worst, tol) << (prompt ? "prompt" : "decode");
  }
}

class Repack : public testing::TestWithParam<RepackCase> {};

// A pruned F16 lmp-8m: repacked at load, its logits (decode and prompt
// paths) equal the dense layout's, and written back it is the same F16 file.
TEST_P(Repack, RepackedModelComputesTheSameLogits) {
  const RepackCase c = GetParam();
  const std::string d = test::temp_dir();
  ASSERT_EQ(test::run_cli("convert " + test::shared_path("models/lmp-8m") + " " + d + "/f16.gguf --dtype f16").status, 0);
  ASSERT_EQ(test::run_cli("prune " + d + "/f16.gguf " + d + "/s.gguf " + c.prune).status, 0);
  auto dense = load_model(d + "/s.gguf"), sparse = load_model(d + "/s.gguf");
  const SparseRepack n = repack_sparse(*sparse);
  EXPECT_EQ(n.total(), 6 * 7);
  EXPECT_EQ(c.layout == DType::F16_BITMAP ? n.n_bitmap : n.n_2of4, 6 * 7);
  EXPECT_EQ(sparse->find("blk.0.ffn_down.weight")->dtype, c.layout);
  EXPECT_FALSE(is_internal_type(sparse->find("token_embd.weight")->dtype));  // only the blocks' matrices
  EXPECT_LT(sparse->n_bytes(), dense->n_bytes());
  auto f16 = load_model(d + "/f16.gguf");
  EXPECT_EQ(repack_sparse(*f16).total(), 0);  // dense weights stay as they are
  expect_same_logits(*dense, *sparse, 2e-3);
  // Written, a repacked model is plain F16 / Q8_0 again (files never hold the internal types), with the same values.
  write_gguf_model(*sparse, d + "/back.gguf", ExportOptions{});
  auto back = load_model(d + "/back.gguf");
  EXPECT_EQ(back->find("blk.0.ffn_down.weight")->dtype, file_type(c.layout));
  for (const char* name : {"blk.3.attn_q.weight", "blk.5.ffn_up.weight"}) {
    const Tensor &a = *back->find(name), &b = *dense->find(name);
    EXPECT_EQ(to_f32(a), to_f32(b)) << name;
    if (a.dtype == DType::Q8_0) {  // quantized blocks come back bit for bit
      EXPECT_EQ(std::vector<uint8_t>(a.data, a.data + a.nbytes), std::vector<uint8_t>(b.data, b.data + b.nbytes)) << name;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Layouts, Repack,
                         testing::Values(RepackCase{"--nm 2:4", DType::F16_2OF4},
                                         RepackCase{"--sparsity 0.7", DType::F16_BITMAP},
                                         RepackCase{"--nm 2:4 --quantize q8_0", DType::Q8_0_2OF4_X8}),
                         [](const auto& info) { return std::string(dtype_name(info.param.layout)); });

// A Q4_0 or Q8_0 lmp-8m: every matrix (rows a multiple of 8) becomes
// Q4_0_X8 / Q8_0_X8, the logits match the plain layout's, and written back
// the file's bytes return.
TEST(Repack, InterleavedComputesTheSameLogits) {
  for (const auto& [type, file_type, x8_type] : {std::tuple{"q4_0", DType::Q4_0, DType::Q4_0_X8},
                                                 std::tuple{"q8_0", DType::Q8_0, DType::Q8_0_X8}}) {
    SCOPED_TRACE(type);
    const std::string d = test::temp_dir();
    ASSERT_EQ(test::run_cli("convert " + test::shared_path("models/lmp-8m") + " " + d + "/q.gguf --dtype " + type).status,
              0);
    auto plain = load_model(d + "/q.gguf"), x8 = load_model(d + "/q.gguf");
    EXPECT_EQ(repack_interleaved(*x8), 6 * 7 + 1);  // the blocks' matrices and the output; not the untied embeddings
    EXPECT_EQ(x8->find("output.weight")->dtype, x8_type);
    EXPECT_EQ(x8->find("token_embd.weight")->dtype, file_type);
    // The two decode kernels sum in different orders; now and then a hidden
    // value then lands on the other side of a Q8_0 activation rounding step,
    // which moves the logits (about 10 here) by a few hundredths.
    expect_same_logits(*plain, *x8, 0.1);
    write_gguf_model(*x8, d + "/back.gguf", ExportOptions{});
    auto back = load_model(d + "/back.gguf");
    for (const char* name : {"blk.0.attn_k.weight", "blk.5.ffn_down.weight", "output.weight"}) {
      const Tensor &a = *back->find(name), &b = *plain->find(name);
      ASSERT_EQ(a.dtype, file_type) << name;
      EXPECT_EQ(std::vector<uint8_t>(a.data, a.data + a.nbytes), std::vector<uint8_t>(b.data, b.data + b.nbytes)) << name;
    }
  }
}

}  // namespace
}  // namespace lmpress
