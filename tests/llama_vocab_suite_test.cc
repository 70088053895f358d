// lmpress's tokenizers against llama.cpp's own tokenizer test files: the
// vocabulary-only GGUFs in the llama.cpp checkout's models/ with their .inp
// (texts separated by "__ggml_vocab_test__") and .out (the ids llama.cpp
// gives), run as its tests/test-tokenizer-0.cpp runs them: no BOS/EOS added,
// special tokens not parsed. Every text must give exactly llama.cpp's ids.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <map>

#include <nlohmann/json.hpp>
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

// A vocabulary test file's texts and llama.cpp's ids for each.
std::vector<std::pair<std::string, std::vector<int32_t>>> suite_cases(const std::string& base) {
  const std::string sep = "\n__ggml_vocab_test__\n";
  const std::string inp = read_text_file(base + ".inp");
  std::istringstream out(read_text_file(base + ".out"));
  std::vector<std::pair<std::string, std::vector<int32_t>>> cases;
  std::string line;
  for (size_t at = 0;;) {
    const size_t next = inp.find(sep, at);
    if (next == std::string::npos) break;  // the file ends with a separator
    if (!std::getline(out, line)) ADD_FAILURE() << base << ".out has fewer lines than tests";
    std::vector<int32_t> want;
    std::istringstream ids(line);
    for (int32_t id; ids >> id;) want.push_back(id);
    cases.push_back({inp.substr(at, next - at), want});
    at = next + sep.size();
  }
  return cases;
}

TEST_P(LlamaVocabSuite, EveryTextGivesLlamaCppsIds) {
  const std::string checkout = test::llama_cpp_checkout();
  if (checkout.empty())
    FAIL() << "the llama.cpp checkout could not be made by scripts/llama-cpp-src.sh (it needs npm and the npm "
              "registry); its models/ggml-vocab-* files are the test's input";
  const std::string base = checkout + "/models/ggml-vocab-" + GetParam() + ".gguf";
  ASSERT_TRUE(std::filesystem::exists(base + ".inp")) << base;
  const GGUFFile g = GGUFFile::open(base);
  auto tok = Tokenizer::create(vocab_from_gguf(g), base);

  size_t checked = 0, equal = 0;
  for (const auto& [text, want] : suite_cases(base)) {
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

// The SentencePiece vocabulary as Hugging Face's LlamaConverter writes it to
// tokenizer.json (transformers' SentencePieceExtractor): every split of a
// token into two tokens is a merge, ranked by the made token's score (then its
// id, then the parts' ids); control tokens are added tokens. `metaspace`: the
// newer form, spaces by a Metaspace pre-tokenizer instead of the normalizer.
std::string llama_converter_tokenizer_json(const Vocab& sp, bool metaspace) {
  std::map<std::string, int32_t> id;
  for (size_t i = 0; i < sp.tokens.size(); i++) id.emplace(sp.tokens[i], int32_t(i));
  struct Merge {
    float score;
    int32_t made, l, r;
  };
  std::vector<Merge> merges;
  for (size_t t = 0; t < sp.tokens.size(); t++) {
    const std::string& tok = sp.tokens[t];
    for (size_t k = 1; k < tok.size(); k++) {
      if ((static_cast<unsigned char>(tok[k]) & 0xC0) == 0x80) continue;  // split between characters only
      const auto l = id.find(tok.substr(0, k)), r = id.find(tok.substr(k));
      if (l != id.end() && r != id.end()) merges.push_back({sp.scores[t], int32_t(t), l->second, r->second});
    }
  }
  std::stable_sort(merges.begin(), merges.end(), [](const Merge& a, const Merge& b) {
    if (a.score != b.score) return a.score > b.score;
    if (a.made != b.made) return a.made < b.made;
    return a.l != b.l ? a.l < b.l : a.r < b.r;
  });
  nlohmann::ordered_json vocab = nlohmann::ordered_json::object(), m = nlohmann::ordered_json::array(),
                         added = nlohmann::ordered_json::array();
  for (size_t i = 0; i < sp.tokens.size(); i++) {
    vocab[sp.tokens[i]] = i;
    if (sp.types[i] == TokenType::Control || sp.types[i] == TokenType::Unknown)
      added.push_back({{"id", i}, {"content", sp.tokens[i]}, {"special", true}});
  }
  for (const Merge& x : merges) m.push_back({sp.tokens[size_t(x.l)], sp.tokens[size_t(x.r)]});
  nlohmann::ordered_json j;
  j["added_tokens"] = added;
  const std::string ms = "\xE2\x96\x81";
  if (metaspace) {
    j["normalizer"] = nullptr;
    j["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", ms}, {"prepend_scheme", "first"}, {"split", false}};
  } else {
    j["normalizer"] = {{"type", "Sequence"},
                       {"normalizers",
                        {{{"type", "Prepend"}, {"prepend", ms}},
                         {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", ms}}}}};
    j["pre_tokenizer"] = nullptr;
  }
  j["model"] = {{"type", "BPE"}, {"unk_token", sp.tokens[size_t(sp.unk)]}, {"byte_fallback", true},
                {"vocab", vocab}, {"merges", m}};
  return j.dump();
}

// A SentencePiece model given only as tokenizer.json (a Hugging Face directory
// without tokenizer.model) tokenizes as llama.cpp does the same vocabulary.
TEST(LlamaVocabSuiteJson, SentencePieceTokenizerJsonGivesLlamaCppsIds) {
  const std::string checkout = test::llama_cpp_checkout();
  if (checkout.empty()) FAIL() << "no llama.cpp checkout (scripts/llama-cpp-src.sh)";
  const std::string base = checkout + "/models/ggml-vocab-llama-spm.gguf";
  const Vocab sp = vocab_from_gguf(GGUFFile::open(base));
  const auto cases = suite_cases(base);
  ASSERT_GE(cases.size(), 20u);
  for (bool metaspace : {false, true}) {
    SCOPED_TRACE(metaspace ? "Metaspace" : "normalizer");
    Vocab v = vocab_from_tokenizer_json_text(llama_converter_tokenizer_json(sp, metaspace), "t/tokenizer.json");
    EXPECT_EQ(v.model, "llama");
    EXPECT_EQ(v.unk, sp.unk);
    auto tok = Tokenizer::create(std::move(v), "t");
    for (const auto& [text, want] : cases)
      EXPECT_EQ(tok->encode(text, false, false), want) << "'" << text << "'";
  }
}

INSTANTIATE_TEST_SUITE_P(Vocabs, LlamaVocabSuite,
                         testing::Values("llama-spm", "phi-3", "llama-bpe", "qwen2", "gpt-2", "qwen35", "deepseek-llm",
                                         "deepseek-coder", "falcon", "mpt", "starcoder", "refact", "command-r", "gemma-4"),
                         [](const testing::TestParamInfo<const char*>& p) {
                           std::string n = p.param;
                           for (char& c : n)
                             if (c == '-') c = '_';
                           return n;
                         });

}  // namespace
}  // namespace lmpress
