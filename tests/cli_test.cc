// End-to-end tests of the lmpress command: each bad input gives a clear
// message and exit status 1; good inputs give the reference numbers.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <map>

#include "core/mapped_file.h"
#include "io/gguf.h"
#include "synthetic_model.h"
#include "test_util.h"

namespace lmpress {
namespace {

using test::run_cli;
namespace fs = std::filesystem;

std::string S(const std::string& rel) { return test::shared_path(rel); }

using test::cli_ppl;
using test::expect_cli_error;

void write(const std::string& path, const std::string& bytes) { std::ofstream(path, std::ios::binary) << bytes; }


TEST(Cli, HelpAndUnknownOptions) {
  auto r = run_cli("--help");
  EXPECT_EQ(r.status, 0);
  for (const char* cmd : {"info", "tokenize", "generate", "perplexity", "convert", "pull"})
    EXPECT_NE(r.out.find(cmd), std::string::npos) << cmd;
  EXPECT_NE(run_cli("perplexity --no-such-flag").status, 0);
  EXPECT_NE(run_cli("").status, 0);
}

TEST(Cli, BadModelFiles) {
  const std::string d = test::temp_dir();
  expect_cli_error("info " + d + "/missing.gguf", "cannot open");
  write(d + "/magic.gguf", "GGML0000000000000000000000");
  expect_cli_error("info " + d + "/magic.gguf", "not a GGUF file");
  std::string gguf = read_text_file(S("models/stories260K/stories260K.gguf"));
  write(d + "/trunc.gguf", gguf.substr(0, 5000));
  expect_cli_error("info " + d + "/trunc.gguf", "truncated GGUF");
  write(d + "/trunc2.gguf", gguf.substr(0, gguf.size() - 100));
  expect_cli_error("info " + d + "/trunc2.gguf", "past the end of the file");
  write(d + "/x.txt", "hello");
  expect_cli_error("info " + d + "/x.txt", "unknown model format");
  std::string bin = read_text_file(S("models/stories260K/stories260K.bin"));
  write(d + "/t.bin", bin.substr(0, 100000));
  fs::copy_file(S("models/stories260K/tok512.bin"), d + "/tok512.bin");
  expect_cli_error("info " + d + "/t.bin", "truncated llama2.c checkpoint");
  write(d + "/tiny.bin", "abc");
  expect_cli_error("info " + d + "/tiny.bin", "too small for a llama2.c");
  write(d + "/full.bin", bin);
  expect_cli_error("info " + d + "/full.bin --tokenizer " + d + "/nope.bin", "cannot open");
}

TEST(Cli, BadHuggingFaceDirectories) {
  const std::string good = test::temp_dir();
  test::write_synthetic_hf(good, {});
  EXPECT_EQ(run_cli("info " + good).status, 0);
  auto variant = [&](const std::function<void(nlohmann::json&)>& edit) {
    std::string d = test::temp_dir();
    for (auto& f : fs::directory_iterator(good)) fs::copy_file(f.path(), d + "/" + f.path().filename().string());
    auto j = nlohmann::json::parse(read_text_file(d + "/config.json"));
    edit(j);
    write(d + "/config.json", j.dump());
    return d;
  };
  expect_cli_error("info " + variant([](auto& j) { j["architectures"] = {"GPTNeoXForCausalLM"}; }),
               "unknown architecture 'GPTNeoXForCausalLM'");
  expect_cli_error("info " + variant([](auto& j) { j["hidden_size"] = 64; }), "has shape [262, 32], the config needs [262, 64]");
  expect_cli_error("info " + variant([](auto& j) { j["num_key_value_heads"] = 3; }), "not a multiple of num_key_value_heads");
  expect_cli_error("info " + variant([](auto& j) { j["num_hidden_layers"] = -2; }), "num_hidden_layers = -2 is out of range");
  expect_cli_error("info " + variant([](auto& j) { j["hidden_size"] = "big"; }), "hidden_size must be an integer");
  expect_cli_error("info " + variant([](auto& j) { j.erase("hidden_size"); }), "missing field hidden_size");
  expect_cli_error("info " + variant([](auto& j) { j["rope_scaling"] = {{"rope_type", "dynamic"}}; }), "rope_scaling type 'dynamic'");
  expect_cli_error("info " + variant([](auto& j) { j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4}, {"mscale", 0.7}}; }),
                   "DeepSeek's YaRN attention factor");
  expect_cli_error("info " + variant([](auto& j) { j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", -4}}; }),
                   "rope_scaling.factor -4 must be a finite number > 0");
  std::string d = variant([](auto&) {});
  write(d + "/config.json", "{\"architectures\": [");
  expect_cli_error("info " + d, "bad JSON");
  d = variant([](auto&) {});
  fs::remove(d + "/tokenizer.json");
  expect_cli_error("info " + d, "no tokenizer.model or tokenizer.json");
  d = variant([](auto&) {});
  const std::string header = R"({"model.norm.weight":{"dtype":"F8_E4M3","shape":[32],"data_offsets":[0,32]}})";
  const uint64_t n = header.size();
  write(d + "/model.safetensors", std::string(reinterpret_cast<const char*>(&n), 8) + header + std::string(32, '\0'));
  expect_cli_error("info " + d, "unsupported dtype F8_E4M3");
}

TEST(Cli, BadTextsAndPrompts) {
  const std::string d = test::temp_dir();
  const std::string m = S("models/stories260K/stories260K.gguf");
  write(d + "/empty.txt", "");
  expect_cli_error("perplexity " + m + " -f " + d + "/empty.txt --ctx 64", "the text file is empty");
  write(d + "/short.txt", "Once upon a time there was a cat.");
  expect_cli_error("perplexity " + m + " -f " + d + "/short.txt --ctx 64", "at least 128 (2 x ctx) are needed");
  expect_cli_error("perplexity " + m + " -f " + d + "/missing.txt", "cannot open");
  expect_cli_error("generate " + m + " -p \"one two three four five six seven eight nine ten\" --ctx 8 -n 4", "does not fit the context of 8");
  expect_cli_error("tokenize " + m, "give -p TEXT or -f FILE");
  EXPECT_NE(run_cli("perplexity " + m + " -f x --ctx 2").status, 0);  // out of range option
}

TEST(Cli, TokenizeMatchesReference) {
  auto r = run_cli("tokenize " + S("models/lmp-8m") + " -p \"The kernel scheduler decides which task runs next, and\"");
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.out, "[1, 418, 655, 2489, 373, 263, 2126, 341, 274, 604, 1613, 1004, 2887, 2205, 2908, 323]\n");
}

// REFERENCE.md: llama-perplexity -c 256 --chunks 40 on lmp-8m gives 295.515.
TEST(Cli, PerplexityOfLmp8mMatchesLlamaCpp) {
  auto r = run_cli("perplexity " + S("models/lmp-8m") + " -f " + S("data/wikitext-2/wiki.test.raw") +
                   " --ctx 256 --chunks 40 --json");
  ASSERT_EQ(r.status, 0) << r.out;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_NEAR(j["ppl"].get<double>(), 295.515, 295.515 * 0.001);
  EXPECT_EQ(j["chunks"], 40);
  EXPECT_EQ(j["tokens"], 505089);
}

TEST(Cli, ConvertRoundTripsAndKeepsInputs) {
  const std::string d = test::temp_dir();
  const double base = cli_ppl(S("models/stories260K/stories260K.gguf"));
  ASSERT_EQ(run_cli("convert " + S("models/stories260K/stories260K.bin") + " " + d + "/a.gguf").status, 0);
  ASSERT_EQ(run_cli("convert " + d + "/a.gguf " + d + "/hf --dtype bf16").status, 0);
  ASSERT_EQ(run_cli("convert " + d + "/hf " + d + "/b.gguf --dtype f16").status, 0);
  EXPECT_NEAR(cli_ppl(d + "/a.gguf"), base, base * 1e-4);
  EXPECT_NEAR(cli_ppl(d + "/hf"), base, base * 0.01);  // bf16 rounding
  EXPECT_NEAR(cli_ppl(d + "/b.gguf"), cli_ppl(d + "/hf"), base * 1e-3);
  expect_cli_error("convert " + d + "/a.gguf " + d + "/a.gguf", "refusing to overwrite the input");
  auto bad = run_cli("convert " + d + "/a.gguf " + d + "/c.gguf --dtype q6_k");  // rejected by the option parser
  EXPECT_NE(bad.status, 0);
  EXPECT_NE(bad.out.find("q6_k not in {f32,f16,bf16,q8_0,q4_0,q4_1,q5_0,q5_1}"), std::string::npos) << bad.out;
  expect_cli_error("convert " + d + "/a.gguf " + d + "/hfq --dtype q4_0", "Hugging Face output takes f32, f16 or bf16");
  EXPECT_FALSE(fs::exists(d + "/hfq"));
  // No temp files are left behind.
  for (auto& f : fs::directory_iterator(d)) EXPECT_EQ(f.path().string().find(".tmp."), std::string::npos) << f.path();
}

TEST(Cli, ConvertToBlockTypesRoundsToNearest) {
  const std::string d = test::temp_dir();
  const double base = cli_ppl(S("models/stories260K/stories260K.gguf"));
  ASSERT_EQ(run_cli("convert " + S("models/stories260K/stories260K.gguf") + " " + d + "/q8.gguf --dtype q8_0").status, 0);
  ASSERT_EQ(run_cli("convert " + S("models/stories260K/stories260K.gguf") + " " + d + "/q4.gguf --dtype q4_0").status, 0);
  EXPECT_NEAR(cli_ppl(d + "/q8.gguf"), base, base * 0.01);
  const double q4 = cli_ppl(d + "/q4.gguf");
  EXPECT_GT(q4, base);  // 4 bits lose something on a 260K-parameter model...
  EXPECT_LT(q4, base * 1.5);  // ...but not everything
  auto info = nlohmann::json::parse(run_cli("info " + d + "/q4.gguf --json").out);
  std::map<std::string, std::string> types;
  for (const auto& t : info["tensors"]) types[t["name"]] = t["dtype"];
  EXPECT_EQ(types["blk.0.attn_q.weight"], "Q4_0");
  EXPECT_EQ(types["blk.0.ffn_down.weight"], "F16");  // rows of 172 are not a multiple of 32
  EXPECT_EQ(types["blk.0.attn_norm.weight"], "F32");
  EXPECT_LT(info["bits_per_weight"].get<double>(), 8.0);
  // llama.cpp's file types: LLAMA_FTYPE_MOSTLY_Q8_0 = 7, MOSTLY_Q4_0 = 2, with quantization version 2.
  for (const auto& [file, ftype] : {std::pair{"/q8.gguf", 7}, std::pair{"/q4.gguf", 2}}) {
    const GGUFFile g = GGUFFile::open(d + file);
    EXPECT_EQ(g.get_int("general.file_type"), ftype) << file;
    EXPECT_EQ(g.get_int("general.quantization_version"), 2) << file;
  }
}

TEST(Cli, GenerateIsDeterministicAndReportsSpeed) {
  const std::string m = S("models/stories260K/stories260K.gguf");
  auto a = run_cli("generate " + m + " -p \"Once upon a time\" -n 24 --json");
  auto b = run_cli("generate " + m + " -p \"Once upon a time\" -n 24 --json");
  ASSERT_EQ(a.status, 0) << a.out;
  auto ja = nlohmann::json::parse(a.out), jb = nlohmann::json::parse(b.out);
  EXPECT_EQ(ja["tokens"], jb["tokens"]);
  EXPECT_EQ(ja["n_generated"], 24);
  EXPECT_GT(ja["gen_tokens_per_s"].get<double>(), 0);
  auto s1 = run_cli("generate " + m + " -p \"Once upon a time\" -n 24 --temp 1.0 --seed 7 --json");
  auto s2 = run_cli("generate " + m + " -p \"Once upon a time\" -n 24 --temp 1.0 --seed 7 --json");
  auto s3 = run_cli("generate " + m + " -p \"Once upon a time\" -n 24 --temp 1.0 --seed 8 --json");
  EXPECT_EQ(nlohmann::json::parse(s1.out)["tokens"], nlohmann::json::parse(s2.out)["tokens"]);
  EXPECT_NE(nlohmann::json::parse(s1.out)["tokens"], nlohmann::json::parse(s3.out)["tokens"]);
  auto streamed = run_cli("generate " + m + " -p \"Once upon a time\" -n 24");
  EXPECT_NE(streamed.out.find("tokens/s"), std::string::npos);
  EXPECT_NE(streamed.out.find(ja["text"].get<std::string>()), std::string::npos);
}

// Sampled byte tokens leave invalid UTF-8 in the text: --json still prints
// the whole result, those bytes as U+FFFD.
TEST(Cli, GenerateJsonReplacesInvalidUtf8) {
  const std::string m = S("models/stories260K/stories260K.gguf");
  int replaced = 0;
  for (int seed = 2; seed <= 5; seed++) {  // nearly flat sampling over 512 tokens, half of them bytes
    auto r = run_cli("generate " + m + " -p \"Once upon\" -n 8 --temp 100 --top-k 0 --top-p 1 --min-p 0 --json -s " +
                     std::to_string(seed));
    ASSERT_EQ(r.status, 0) << r.out;
    const auto j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j["n_generated"], 8);
    replaced += j["text"].get<std::string>().find("\xef\xbf\xbd") != std::string::npos;
  }
  EXPECT_GT(replaced, 0);
}

TEST(Cli, InfoJson) {
  auto r = run_cli("info " + S("models/lmp-8m") + " --json");
  ASSERT_EQ(r.status, 0);
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["n_params"], 7671456);  // REFERENCE.md
  EXPECT_EQ(j["config"]["num_kv_heads"], 2);
  EXPECT_EQ(j["tensors"].size(), 57u);
  EXPECT_EQ(j["tokenizer"]["n_tokens"], 4096);
}

}  // namespace
}  // namespace lmpress
