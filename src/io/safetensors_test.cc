#include "io/safetensors.h"

#include <gtest/gtest.h>

#include <cstring>
#include <fstream>

#include "core/error.h"
#include "core/fp16.h"
#include "kernels/to_f32.h"
#include "test_util.h"

namespace lmpress {
namespace {

std::string raw_file(const std::string& header, const std::string& data) {
  std::string s;
  uint64_t n = header.size();
  s.append(reinterpret_cast<const char*>(&n), 8);
  return s + header + data;
}

std::string error_of(const std::string& bytes) {
  try {
    SafetensorsFile::parse(nullptr, reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "x.safetensors");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Safetensors, RoundTrip) {
  std::string dir = test::temp_dir();
  std::vector<uint16_t> h = {f32_to_f16(1.5f), f32_to_f16(-2.0f)};
  Tensor t16;
  t16.name = "half";
  t16.dtype = DType::F16;
  t16.shape = {2};
  t16.data = reinterpret_cast<const uint8_t*>(h.data());
  t16.nbytes = 4;
  write_safetensors(dir + "/m.safetensors", {{make_f32_tensor("w", {2, 2}, {1, 2, 3, 4}), {}}, {t16, {}}}, {{"format", "pt"}});
  auto f = SafetensorsFile::open(dir + "/m.safetensors");
  ASSERT_EQ(f.tensors.size(), 2u);
  EXPECT_EQ(f.metadata.at("format"), "pt");
  EXPECT_EQ(f.tensors[0].name, "w");
  EXPECT_EQ(to_f32(f.tensors[0])[3], 4.0f);
  EXPECT_EQ(to_f32(f.tensors[1])[0], 1.5f);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(f.tensors[0].data) % 8, 0u);  // header padded
}

TEST(Safetensors, ShardedIndex) {
  std::string dir = test::temp_dir();
  write_safetensors(dir + "/a.safetensors", {{make_f32_tensor("x", {1}, {1}), {}}});
  write_safetensors(dir + "/b.safetensors", {{make_f32_tensor("y", {2}, {2, 3}), {}}});
  std::ofstream(dir + "/model.safetensors.index.json") << R"({"metadata":{},"weight_map":{"x":"a.safetensors","y":"b.safetensors"}})";
  auto ts = load_safetensors_dir(dir);
  ASSERT_EQ(ts.size(), 2u);
  std::ofstream(dir + "/model.safetensors.index.json") << R"({"weight_map":{"x":"a.safetensors","z":"b.safetensors"}})";
  try {
    load_safetensors_dir(dir);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tensor z is listed in the index but missing"), std::string::npos);
  }
  std::ofstream(dir + "/model.safetensors.index.json") << R"({"weight_map":{"x":"../a.safetensors"}})";
  EXPECT_THROW(load_safetensors_dir(dir), Error);
  std::ofstream(dir + "/model.safetensors.index.json") << "{not json";
  EXPECT_THROW(load_safetensors_dir(dir), Error);
  EXPECT_THROW(load_safetensors_dir(test::temp_dir()), Error);  // nothing there
}

TEST(Safetensors, BadInputsGiveClearErrors) {
  const std::string data(16, '\0');
  EXPECT_NE(error_of("abc").find("only 3 bytes"), std::string::npos);
  EXPECT_NE(error_of(std::string("\xff\xff\xff\xff\xff\xff\xff\x7f", 8)).find("absurd"), std::string::npos);
  EXPECT_NE(error_of(raw_file("{}", "").substr(0, 9)).find("truncated"), std::string::npos);
  EXPECT_NE(error_of(raw_file("{\"a\":", "")).find("bad safetensors header JSON"), std::string::npos);
  EXPECT_NE(error_of(raw_file("[1]", "")).find("not a JSON object"), std::string::npos);
  EXPECT_EQ(error_of(raw_file(R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}})", data)), "");
  EXPECT_NE(error_of(raw_file(R"({"w":{"dtype":"Q9","shape":[4],"data_offsets":[0,16]}})", data)).find("unsupported dtype Q9"),
            std::string::npos);
  EXPECT_NE(error_of(raw_file(R"({"w":{"dtype":"F32","shape":[5],"data_offsets":[0,16]}})", data)).find("needs 20"),
            std::string::npos);
  EXPECT_NE(error_of(raw_file(R"({"w":{"dtype":"F32","shape":[8],"data_offsets":[0,32]}})", data)).find("past the"),
            std::string::npos);
  EXPECT_NE(error_of(raw_file(R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,16]}})", data)).find("negative"),
            std::string::npos);
  EXPECT_NE(error_of(raw_file(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,16]}})", data))
                .find("overflow"),
            std::string::npos);
  EXPECT_NE(error_of(raw_file(R"({"w":{"dtype":"F32","shape":[4]}})", data)).find("data_offsets"), std::string::npos);
  EXPECT_NE(error_of(raw_file(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
                              data))
                .find("overlap"),
            std::string::npos);
}

}  // namespace
}  // namespace lmpress
