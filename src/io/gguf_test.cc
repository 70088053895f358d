#include "io/gguf.h"

#include <gtest/gtest.h>

#include <cstring>
#include <fstream>

#include "core/error.h"
#include "core/mapped_file.h"
#include "kernels/to_f32.h"
#include "test_util.h"

namespace lmpress {
namespace {

std::string write_sample(const std::string& dir) {
  GGUFWriter w;
  w.set("general.architecture", GGUFValue::str("llama"));
  w.set("u8", {GGUFType::UINT8, uint64_t(200)});
  w.set("i8", {GGUFType::INT8, int64_t(-5)});
  w.set("u16", {GGUFType::UINT16, uint64_t(60000)});
  w.set("i16", {GGUFType::INT16, int64_t(-30000)});
  w.set("u32", GGUFValue::u32(4000000000u));
  w.set("i32", GGUFValue::i32(-2000000000));
  w.set("u64", GGUFValue::u64(1ull << 40));
  w.set("i64", {GGUFType::INT64, int64_t(-(1ll << 40))});
  w.set("f32", GGUFValue::f32(1.5f));
  w.set("f64", {GGUFType::FLOAT64, 2.25});
  w.set("bool", GGUFValue::boolean(true));
  w.set("strs", GGUFValue::str_array({"a", "", "ccc"}));
  w.set("nested", GGUFValue::array(GGUFType::ARRAY, {GGUFValue::i32_array({1, 2}), GGUFValue::i32_array({})}));
  w.set("empty", GGUFValue::array(GGUFType::FLOAT32, {}));
  std::vector<float> a = {1, 2, 3, 4, 5, 6};
  w.add_tensor(make_f32_tensor("a", {2, 3}, a));
  w.add_tensor(make_f32_tensor("b", {5}, {7, 8, 9, 10, 11}));
  std::string path = dir + "/sample.gguf";
  w.write(path);
  return path;
}

TEST(GGUF, RoundTripsEveryValueType) {
  std::string path = write_sample(test::temp_dir());
  GGUFFile g = GGUFFile::open(path);
  EXPECT_EQ(g.version, 3u);
  EXPECT_EQ(g.find("u8")->as_int(), 200);
  EXPECT_EQ(g.find("i8")->as_int(), -5);
  EXPECT_EQ(g.find("u16")->as_int(), 60000);
  EXPECT_EQ(g.find("i16")->as_int(), -30000);
  EXPECT_EQ(g.find("u32")->as_int(), 4000000000ll);
  EXPECT_EQ(g.find("i32")->as_int(), -2000000000);
  EXPECT_EQ(g.find("u64")->as_int(), 1ll << 40);
  EXPECT_EQ(g.find("i64")->as_int(), -(1ll << 40));
  EXPECT_EQ(g.find("f32")->as_double(), 1.5);
  EXPECT_EQ(g.find("f64")->as_double(), 2.25);
  EXPECT_EQ(g.get_bool("bool"), true);
  const auto& strs = g.find("strs")->as_array();
  ASSERT_EQ(strs.size(), 3u);
  EXPECT_EQ(strs[2].as_string(), "ccc");
  const auto& nested = g.find("nested")->as_array();
  ASSERT_EQ(nested.size(), 2u);
  EXPECT_EQ(nested[0].as_array()[1].as_int(), 2);
  EXPECT_TRUE(nested[1].as_array().empty());
  EXPECT_EQ(g.find("empty")->elem_type, GGUFType::FLOAT32);
  auto ts = g.tensors();
  ASSERT_EQ(ts.size(), 2u);
  EXPECT_EQ(ts[0].shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(g.tensor_infos[0].ne, (std::vector<uint64_t>{3, 2}));  // ggml order
  EXPECT_EQ(to_f32(ts[0])[5], 6.0f);
  EXPECT_EQ(to_f32(ts[1])[4], 11.0f);
  EXPECT_EQ(g.data_offset % 32, 0u);
  EXPECT_EQ(g.tensor_infos[1].offset % 32, 0u);
}

TEST(GGUF, ReadsVersion2) {
  // v2 and v3 share the little-endian layout (v3 only added big-endian files).
  std::string bytes = read_text_file(write_sample(test::temp_dir()));
  bytes[4] = 2;
  GGUFFile g = GGUFFile::parse(nullptr, reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "v2");
  EXPECT_EQ(g.version, 2u);
  EXPECT_EQ(g.tensor_infos.size(), 2u);
}

TEST(GGUF, ReadsTheSharedModelFiles) {
  if (!test::have_shared("models/stories260K/stories260K.gguf")) GTEST_SKIP();
  GGUFFile g = GGUFFile::open(test::shared_path("models/stories260K/stories260K.gguf"));
  EXPECT_EQ(g.req_string("general.architecture"), "llama");
  EXPECT_EQ(g.req_int("llama.block_count"), 5);
  EXPECT_EQ(g.find("tokenizer.ggml.tokens")->as_array().size(), 512u);
}

// Every prefix of a valid file must be rejected with an Error (not a crash).
TEST(GGUF, EveryTruncationIsAnError) {
  std::string path = write_sample(test::temp_dir());
  std::string bytes = read_text_file(path);
  GGUFFile full = GGUFFile::open(path);
  const size_t data_end = full.data_offset + 32 + 5 * 4;  // last tensor's end
  for (size_t n = 0; n < data_end; n++) {
    EXPECT_THROW(GGUFFile::parse(nullptr, reinterpret_cast<const uint8_t*>(bytes.data()), n, "t"), Error) << n;
  }
}

struct Header {
  std::string s;
  template <typename T>
  Header& put(T v) {
    s.append(reinterpret_cast<const char*>(&v), sizeof(T));
    return *this;
  }
  Header& str(const std::string& x) {
    put<uint64_t>(x.size());
    s += x;
    return *this;
  }
};

std::string parse_error(const std::string& bytes) {
  try {
    GGUFFile::parse(nullptr, reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "bad.gguf");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

Header header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3) {
  Header h;
  h.put<uint32_t>(0x46554747).put<uint32_t>(version).put<uint64_t>(n_tensors).put<uint64_t>(n_kv);
  return h;
}

TEST(GGUF, BadInputsGiveClearErrors) {
  EXPECT_NE(parse_error("GGML").find("bad magic"), std::string::npos);
  EXPECT_NE(parse_error("xx").find("not a GGUF"), std::string::npos);
  EXPECT_NE(parse_error(header(0, 0, 1).s).find("v1"), std::string::npos);
  EXPECT_NE(parse_error(header(0, 0, 7).s).find("version 7"), std::string::npos);
  EXPECT_NE(parse_error(header(0, 0, 0x03000000).s).find("big-endian"), std::string::npos);
  // Absurd counts are rejected before any allocation.
  EXPECT_NE(parse_error(header(0, ~0ull).s).find("metadata count"), std::string::npos);
  EXPECT_NE(parse_error(header(~0ull, 0).s).find("tensor count"), std::string::npos);
  // A string longer than the file.
  EXPECT_NE(parse_error(header(0, 1).put<uint64_t>(1ull << 60).put<uint64_t>(0).put<uint64_t>(0).s).find("truncated"),
            std::string::npos);
  // Unknown value type.
  EXPECT_NE(parse_error(header(0, 1).str("k").put<uint32_t>(99).s).find("unknown value type 99"), std::string::npos);
  // Array of 2^60 elements.
  EXPECT_NE(parse_error(header(0, 1).str("k").put<uint32_t>(9).put<uint32_t>(4).put<uint64_t>(1ull << 60).s).find("exceeds"),
            std::string::npos);
  // Arrays nested too deep.
  {
    Header h = header(0, 1).str("deep").put<uint32_t>(9);
    for (int i = 0; i < 20; i++) h.put<uint32_t>(9).put<uint64_t>(1);
    EXPECT_NE(parse_error(h.s).find("nested deeper"), std::string::npos);
  }
  // Duplicate key.
  EXPECT_NE(parse_error(header(0, 2).str("k").put<uint32_t>(4).put<uint32_t>(1).str("k").put<uint32_t>(4).put<uint32_t>(2).s)
                .find("duplicate metadata key k"),
            std::string::npos);
  // Bad alignment value.
  EXPECT_NE(parse_error(header(0, 1).str("general.alignment").put<uint32_t>(4).put<uint32_t>(3).s).find("power of two"),
            std::string::npos);
  auto tensor = [](uint32_t n_dims, std::vector<uint64_t> ne, uint32_t type, uint64_t off) {
    Header h = header(1, 0);
    h.str("w").put<uint32_t>(n_dims);
    for (auto d : ne) h.put<uint64_t>(d);
    h.put<uint32_t>(type).put<uint64_t>(off);
    h.s.resize((h.s.size() + 31) / 32 * 32, '\0');
    h.s.append(64, '\0');  // 64 bytes of data
    return h.s;
  };
  EXPECT_EQ(parse_error(tensor(1, {16}, 0, 0)), "");  // 16 f32 fit in 64 bytes
  EXPECT_NE(parse_error(tensor(5, {1, 1, 1, 1, 1}, 0, 0)).find("n_dims 5"), std::string::npos);
  EXPECT_NE(parse_error(tensor(0, {}, 0, 0)).find("n_dims 0"), std::string::npos);
  EXPECT_NE(parse_error(tensor(1, {17}, 0, 0)).find("past the end"), std::string::npos);
  EXPECT_NE(parse_error(tensor(1, {4}, 0, 64)).find("past the end"), std::string::npos);
  EXPECT_NE(parse_error(tensor(1, {4}, 0, 4)).find("not aligned"), std::string::npos);
  EXPECT_NE(parse_error(tensor(1, {4}, 77, 0)).find("unknown ggml type 77"), std::string::npos);
  EXPECT_NE(parse_error(tensor(2, {1ull << 33, 1ull << 33}, 0, 0)).find("overflow"), std::string::npos);
  EXPECT_NE(parse_error(tensor(2, {1ull << 62, 4}, 0, 0)).find("overflow"), std::string::npos);
  EXPECT_NE(parse_error(tensor(1, {0}, 0, 0)).find("dimension 0 is 0"), std::string::npos);
  EXPECT_NE(parse_error(tensor(1, {33}, 2, 0)).find("block size"), std::string::npos);  // Q4_0 needs 32 | ne0
}

// Two tensors sharing bytes would alias each other; touching ranges are fine.
TEST(GGUF, OverlappingTensorDataIsAnError) {
  auto two = [](uint64_t off_b) {
    Header h = header(2, 0);
    h.str("wa").put<uint32_t>(1).put<uint64_t>(16).put<uint32_t>(0).put<uint64_t>(64);  // [64, 128)
    h.str("wb").put<uint32_t>(1).put<uint64_t>(16).put<uint32_t>(0).put<uint64_t>(off_b);
    h.s.resize((h.s.size() + 31) / 32 * 32, '\0');
    h.s.append(256, '\0');
    return h.s;
  };
  EXPECT_EQ(parse_error(two(0)), "");
  EXPECT_EQ(parse_error(two(128)), "");
  EXPECT_NE(parse_error(two(96)).find("tensors wa [64, 128) and wb [96, 160) overlap"), std::string::npos)
      << parse_error(two(96));
  EXPECT_NE(parse_error(two(32)).find("tensors wb [32, 96) and wa [64, 128) overlap"), std::string::npos);
  EXPECT_NE(parse_error(two(64)).find("overlap"), std::string::npos);
}

TEST(GGUF, WriterReplacesAndRejectsDuplicates) {
  GGUFWriter w;
  w.set("a", GGUFValue::u32(1));
  w.set("a", GGUFValue::u32(2));
  w.add_tensor(make_f32_tensor("t", {1}, {1}));
  EXPECT_THROW(w.add_tensor(make_f32_tensor("t", {1}, {1})), Error);
  std::string path = test::temp_dir() + "/w.gguf";
  w.write(path);
  GGUFFile g = GGUFFile::open(path);
  EXPECT_EQ(g.kv.size(), 1u);
  EXPECT_EQ(g.get_int("a"), 2);
  EXPECT_THROW(g.get_string("a"), Error);  // wrong type asked for
}

}  // namespace
}  // namespace lmpress
