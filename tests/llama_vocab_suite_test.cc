// lmpress's tokenizers against llama.cpp's own tokenizer test files: the
// vocabulary-only GGUFs in the llama.cpp checkout's models/ with their .inp
// (texts separated by "__ggml_vocab_test__") and .out (the ids llama.cpp
// gives), run as its tests/test-tokenizer-0.cpp runs them: no BOS/EOS added,
// special tokens not parsed. Every text must give exactly llama.cpp's ids.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/mapped_file.h"
#include "io/gguf.h"
#include "io/tokenizer_files.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"

namespace lmpress {
namespace {

class LlamaVocabSuite : public testing::TestWithParam<const char*> {};

TEST_P(LlamaVocabSuite, EveryTextGivesLlamaCppsIds) {
  const std::string checkout = test::llama_cpp_checkout();
  if (checkout.empty())
    FAIL() << "the llama.cpp checkout could not be made by scripts/llama-cpp-src.sh (it needs npm and the npm "
              "registry); its models/ggml-vocab-* files are the test's input";
  const std::string base = checkout + "/models/ggml-vocab-" + GetParam() + ".gguf";
  ASSERT_TRUE(std::filesystem::exists(base + ".inp")) << base;
  const GGUFFile g = GGUFFile::open(base);
  auto tok = Tokenizer::create(vocab_from_gguf(g), base);

  const std::string sep = "\n__ggml_vocab_test__\n";
  std::string inp = read_text_file(base + ".inp");
  std::vector<std::string> texts;
  for (size_t at = 0;;) {
    const size_t next = inp.find(sep, at);
    if (next == std::string::npos) break;  // the file ends with a separator
    texts.push_back(inp.substr(at, next - at));
    at = next + sep.size();
  }
  std::istringstream out(read_text_file(base + ".out"));
  size_t checked = 0, equal = 0;
  std::string line;
  for (const std::string& text : texts) {
    ASSERT_TRUE(std::getline(out, line)) << base << ".out has fewer lines than tests";
    std::vector<int32_t> want;
    std::istringstream ids(line);
    for (int32_t id; ids >> id;) want.push_back(id);
    const std::vector<int32_t> got = tok->encode(text, false, false);
    checked++;
    if (got == want) {
      equal++;
    } else {
      ADD_FAILURE() << GetParam() << ": '" << text << "' gives " << testing::PrintToString(got) << ", llama.cpp "
                    << testing::PrintToString(want);
    }
  }
  EXPECT_GE(checked, 20u);
  RecordProperty("equal", std::to_string(equal) + "/" + std::to_string(checked));
}

// `lmpress tokenize` reads a vocabulary-only GGUF and gives llama.cpp's ids.
TEST(LlamaVocabCli, TokenizeReadsAVocabularyOnlyGguf) {
  const std::string checkout = test::llama_cpp_checkout();
  if (checkout.empty()) FAIL() << "no llama.cpp checkout (scripts/llama-cpp-src.sh)";
  const std::string base = checkout + "/models/ggml-vocab-deepseek-llm.gguf", d = test::temp_dir();
  const std::string sep = "\n__ggml_vocab_test__\n", inp = read_text_file(base + ".inp");
  std::istringstream out(read_text_file(base + ".out"));
  std::string line;
  size_t at = 0;
  for (int i = 0; i < 40; i++) {
    const size_t next = inp.find(sep, at);
    ASSERT_NE(next, std::string::npos);
    ASSERT_TRUE(std::getline(out, line));
    if (i % 8 == 7) {  // five of the texts
      std::ofstream(d + "/t.txt", std::ios::binary) << inp.substr(at, next - at);
      const auto r = test::run_cli("tokenize " + base + " -f " + d + "/t.txt --no-bos --no-parse-special");
      ASSERT_EQ(r.status, 0) << r.out;
      std::string want = "[";
      std::istringstream ids(line);
      bool first = true;
      for (int32_t id; ids >> id; first = false) want += (first ? "" : ", ") + std::to_string(id);
      EXPECT_EQ(r.out, want + "]\n") << inp.substr(at, next - at);
    }
    at = next + sep.size();
  }
  test::expect_cli_error("tokenize " + checkout + "/models/ggml-vocab-aquila.gguf.inp -p x", "error:");
}

INSTANTIATE_TEST_SUITE_P(Vocabs, LlamaVocabSuite,
                         testing::Values("llama-spm", "phi-3", "llama-bpe", "qwen2", "gpt-2", "qwen35", "deepseek-llm",
                                         "deepseek-coder", "falcon", "mpt", "starcoder", "refact", "command-r"),
                         [](const testing::TestParamInfo<const char*>& p) {
                           std::string n = p.param;
                           for (char& c : n)
                             if (c == '-') c = '_';
                           return n;
                         });

}  // namespace
}  // namespace lmpress
