#include "io/tokenizer_files.h"

#include <gtest/gtest.h>

#include <fstream>
#include <functional>
#include <set>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"

namespace lmpress {
namespace {

using test::expect_error;

// A small valid tokenizer.json; `edit` breaks one part of it.
std::string tokenizer_json(const std::function<void(nlohmann::json&)>& edit = {}) {
  nlohmann::json j = {
      {"added_tokens", {{{"id", 3}, {"content", "<|eos|>"}, {"special", true}}}},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"use_regex", true}}},
      {"model", {{"type", "BPE"}, {"vocab", {{"a", 0}, {"b", 1}, {"ab", 2}}}, {"merges", {"a b"}}}}};
  if (edit) edit(j);
  return j.dump();
}

Vocab read(const std::string& text) { return vocab_from_tokenizer_json_text(text, "t/tokenizer.json"); }

TEST(TokenizerJson, ReadsAValidFile) {
  const Vocab v = read(tokenizer_json());
  EXPECT_EQ(v.tokens, (std::vector<std::string>{"a", "b", "ab", "<|eos|>"}));
  EXPECT_EQ(v.types[3], TokenType::Control);
  EXPECT_EQ(v.merges, std::vector<std::string>{"a b"});
}

// Fields of the wrong type were nlohmann exceptions; each is now an Error
// naming the file and the field.
TEST(TokenizerJson, BadFieldsNameTheField) {
  expect_error([] { read("{\"model\": "); }, "t/tokenizer.json: bad JSON");
  expect_error([] { read("[1]"); }, "t/tokenizer.json: not a JSON object");
  expect_error([] { read(tokenizer_json([](auto& j) { j["model"]["type"] = 7; })); },
               "t/tokenizer.json: field model.type must be a string");
  expect_error([] { read(tokenizer_json([](auto& j) { j["model"]["vocab"]["b"] = "1"; })); },
               "field model.vocab[\"b\"] must be an integer");
  expect_error([] { read(tokenizer_json([](auto& j) { j["model"]["merges"] = {{"a"}}; })); },
               "field model.merges[0] must be a string or a pair of strings");
  expect_error([] { read(tokenizer_json([](auto& j) { j["added_tokens"][0]["id"] = "3"; })); },
               "field added_tokens[0].id must be an integer");
  expect_error([] { read(tokenizer_json([](auto& j) { j["added_tokens"][0]["special"] = 1; })); },
               "field added_tokens[0].special must be true or false");
  expect_error([] { read(tokenizer_json([](auto& j) { j["pre_tokenizer"]["use_regex"] = "yes"; })); },
               "field pre_tokenizer.use_regex must be true or false");
  expect_error([] { read(tokenizer_json([](auto& j) { j["model"].erase("merges"); })); },
               "field model.merges must be an array");
}

// SentencePiece-style files: which normalizers are read, and what is refused by name.
TEST(TokenizerJson, SentencePieceStyleNormalizers) {
  const std::string ms = "\xE2\x96\x81";
  auto spm = [&](const std::function<void(nlohmann::json&)>& edit) {
    return tokenizer_json([&](nlohmann::json& j) {
      j["pre_tokenizer"] = nullptr;
      j["model"]["vocab"] = {{"<unk>", 0}, {ms, 1}, {"a", 2}, {ms + "a", 3}, {"<0x41>", 4}};
      j["model"]["merges"] = {ms + " a"};
      j["model"]["unk_token"] = "<unk>";
      j["added_tokens"] = nlohmann::json::array();
      j["normalizer"] = {{"type", "Sequence"},
                         {"normalizers",
                          {{{"type", "Prepend"}, {"prepend", ms}},
                           {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", ms}}}}};
      if (edit) edit(j);
    });
  };
  const Vocab v = read(spm({}));
  EXPECT_EQ(v.model, "llama");
  EXPECT_TRUE(v.add_space_prefix);
  EXPECT_EQ(v.unk, 0);
  EXPECT_EQ(v.types[4], TokenType::Byte);
  EXPECT_EQ(v.scores[3], 0.0f);  // made by merge 0
  EXPECT_LT(v.scores[2], v.scores[3]);
  EXPECT_TRUE(v.merges.empty());
  // Without Prepend: no dummy prefix.
  EXPECT_FALSE(read(spm([](auto& j) { j["normalizer"]["normalizers"].erase(0); })).add_space_prefix);
  // Steps before the space steps run first; one after them is refused by name.
  const Vocab lower = read(spm([](auto& j) { 
    auto& n = j["normalizer"]["normalizers"];
    n.insert(n.begin(), nlohmann::json{{"type", "Lowercase"}});
  }));
  ASSERT_EQ(lower.normalizers.size(), 1u);
  EXPECT_EQ(lower.normalizers[0].kind, NormalizerStep::Kind::Lowercase);
  EXPECT_TRUE(lower.add_space_prefix);
  EXPECT_EQ(Tokenizer::create(lower, "t")->encode("A", false, false), (std::vector<int32_t>{3}));  // "▁a"
  expect_error([&] { read(spm([](auto& j) { j["normalizer"]["normalizers"].push_back({{"type", "NFKC"}}); })); },
               "t/tokenizer.json: normalizer.normalizers[2]: a normalizer after SentencePiece's space steps "
               "(normalizer.normalizers[0]) is not supported");
  expect_error([&] { read(spm([](auto& j) { j["normalizer"]["normalizers"][0] = {{"type", "Precompiled"}}; })); },
               "t/tokenizer.json: normalizer.normalizers[0]: normalizer 'Precompiled' is not supported");
  expect_error([&] { read(spm([&](auto& j) { j["model"]["merges"] = {"a a"}; })); },
               "model.merges[0] ('a a') does not make a token of the vocabulary");
  expect_error([&] { read(spm([&](auto& j) { j["model"]["unk_token"] = "<missing>"; })); },
               "model.unk_token '<missing>' is not in the vocabulary");
  expect_error([&] {
    read(spm([&](auto& j) {
      j["normalizer"] = nullptr;
      j["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", ms}, {"prepend_scheme", "sometimes"}};
    }));
  }, "pre_tokenizer.prepend_scheme 'sometimes' is not always, first or never");
  expect_error([&] {
    read(spm([&](auto& j) { j["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", ms}, {"split", true}}; }));
  }, "a Metaspace that splits the text at spaces (split: true) is not supported");
  expect_error([&] { read(spm([&](auto& j) { j["pre_tokenizer"] = {{"type", "Digits"}}; })); },
               "pre_tokenizer 'Digits' with SentencePiece-style spaces is not supported");
  // A merge whose left token holds a space.
  EXPECT_EQ(read(spm([&](auto& j) {
              j["model"]["vocab"]["x y"] = 5;
              j["model"]["vocab"]["x yz"] = 6;
              j["model"]["vocab"]["z"] = 7;
              j["model"]["merges"] = {ms + " a", "x y z"};
            })).scores[6],
            -1.0f);
  // A byte-level file with a normalizer lmpress does not apply is refused, not tokenized without it.
  expect_error([] { read(tokenizer_json([](auto& j) { j["normalizer"] = {{"type", "BertNormalizer"}}; })); },
               "normalizer: normalizer 'BertNormalizer' is not supported");
  EXPECT_EQ(read(tokenizer_json([](auto& j) { j["normalizer"] = {{"type", "NFC"}}; })).normalizers.size(), 1u);
}

Vocab with_normalizer(const nlohmann::json& steps) {
  return read(tokenizer_json([&](auto& j) { j["normalizer"] = {{"type", "Sequence"}, {"normalizers", steps}}; }));
}

// Every normalizer step against Python's unicodedata and `regex` module on the
// same inputs (tests/data/normalizer_cases.json, made by
// tests/make_normalizer_cases.py): an implementation of the Unicode data
// independent of utf8proc's.
TEST(Normalizer, MatchesPythonOnEveryStep) {
  std::ifstream f(std::string(LMPRESS_SOURCE_DIR) + "/tests/data/normalizer_cases.json");
  ASSERT_TRUE(f) << "tests/data/normalizer_cases.json";
  const nlohmann::json cases = nlohmann::json::parse(f)["cases"];
  ASSERT_GT(cases.size(), 150u);
  std::set<std::string> names;
  for (const auto& c : cases) {
    const Vocab v = with_normalizer(c["steps"]);
    ASSERT_EQ(v.normalizers.size(), c["steps"].size());
    const Normalizer n(v.normalizers, "t");
    const std::string in = c["input"], want = c["output"];
    EXPECT_EQ(n.apply(in), want) << c["name"] << " of '" << in << "'";
    names.insert(c["name"]);
  }
  EXPECT_EQ(names.size(), 9u);
}

TEST(Normalizer, EdgeCasesByHand) {
  auto apply = [](const nlohmann::json& steps, const std::string& s) {
    return Normalizer(with_normalizer(steps).normalizers, "t").apply(s);
  };
  const nlohmann::json nfc = {{{"type", "NFC"}}}, lower = {{{"type", "Lowercase"}}};
  // Invalid UTF-8 passes through every step; valid text around it is still normalized.
  EXPECT_EQ(apply(nfc, "A\xFF\xC3" "BE\xCC\x81"), "A\xFF\xC3" "B\xC3\x89");
  EXPECT_EQ(apply(lower, "\xFF" "ABC\xE2\x82"), "\xFF" "abc\xE2\x82");
  // A regex matching the empty string: Python's re.sub("x*", "-", ...) gives these.
  auto replace = [](const nlohmann::json& pattern, const std::string& content) {
    return nlohmann::json{{{"type", "Replace"}, {"pattern", pattern}, {"content", content}}};
  };
  EXPECT_EQ(apply(replace({{"Regex", "x*"}}, "-"), "abc"), "-a-b-c-");
  EXPECT_EQ(apply(replace({{"Regex", "x*"}}, "-"), "axxb"), "-a--b-");
  EXPECT_EQ(apply(replace({{"Regex", "\\s+"}}, " "), "a \t\xC2\xA0\xE3\x80\x80 b"), "a b");
  EXPECT_EQ(apply(replace({{"String", "aa"}}, "b"), "aaa"), "ba");  // left to right, not overlapping
  EXPECT_EQ(apply(replace({{"String", "$1"}}, "\\0$0"), "x$1"), "x\\0$0");  // content is literal
  // Prepend adds nothing to empty text; Strip of all whitespace leaves none.
  EXPECT_EQ(apply({{{"type", "Prepend"}, {"prepend", "_"}}}, ""), "");
  EXPECT_EQ(apply({{{"type", "Strip"}, {"strip_left", false}, {"strip_right", true}}}, " \n a \xE2\x80\x83"), " \n a");
  EXPECT_EQ(apply({{{"type", "Strip"}}}, " \t\xE3\x80\x80"), "");
  // Bad steps name where they are.
  expect_error([&] { with_normalizer(replace({{"String", ""}}, "x")); }, "normalizer.normalizers[0].pattern is empty");
  expect_error([&] { Normalizer(with_normalizer(replace({{"Regex", "(a"}}, "x")).normalizers, "t/tokenizer.json"); },
               "t/tokenizer.json: normalizer step 0: Replace regex does not compile");
  expect_error([&] { with_normalizer({{{"type", "Strip"}, {"strip_left", "yes"}}}); },
               "field normalizer.normalizers[0].strip_left must be true or false");
  // A regex that backtracks past PCRE2's match limit is an error, not text left unreplaced.
  expect_error([&] { apply(replace({{"Regex", "(a|aa)+\\d"}}, "x"), std::string(60, 'a')); },
               "t: normalizer step 0: Replace regex failed: match limit exceeded");
  nlohmann::json deep = {{"type", "NFC"}};
  for (int i = 0; i < 10; i++) deep = {{"type", "Sequence"}, {"normalizers", {deep}}};
  expect_error([&] { read(tokenizer_json([&](auto& j) { j["normalizer"] = deep; })); }, "nests normalizers too deeply");
}

// A byte-level tokenizer with NFKC and Lowercase tokenizes full-width capitals as
// the ASCII lowercase text, also after a GGUF and a tokenizer.json round trip.
TEST(Normalizer, AppliedBeforeByteLevelBpeAndKeptByWriters) {
  const nlohmann::json steps = {{{"type", "NFKC"}}, {{"type", "Lowercase"}}};
  const Vocab v = with_normalizer(steps);
  const auto tok = Tokenizer::create(v, "t");
  const std::vector<int32_t> ab = tok->encode("ab", false, false);
  EXPECT_EQ(ab, (std::vector<int32_t>{2}));
  EXPECT_EQ(tok->encode("\xEF\xBC\xA1\xEF\xBC\xA2", false, false), ab);  // "ＡＢ"
  EXPECT_EQ(tok->encode("A<|eos|>B", false, true), (std::vector<int32_t>{0, 3, 1}));

  const std::string dir = test::temp_dir();
  GGUFWriter w;
  vocab_to_gguf(v, w);
  w.write(dir + "/v.gguf");
  const Vocab g = vocab_from_gguf(GGUFFile::open(dir + "/v.gguf"));
  EXPECT_EQ(g.normalizers, v.normalizers);
  EXPECT_EQ(read(vocab_to_tokenizer_json(v)).normalizers, v.normalizers);
  // Every step kind survives the JSON written for them.
  const nlohmann::json all = {{{"type", "NFD"}}, {{"type", "NFKD"}}, {{"type", "StripAccents"}},
                              {{"type", "Strip"}, {"strip_left", false}, {"strip_right", true}},
                              {{"type", "Replace"}, {"pattern", {{"Regex", "\\d"}}}, {"content", "#"}},
                              {{"type", "Prepend"}, {"prepend", "x"}}};
  const Vocab va = with_normalizer(all);
  EXPECT_EQ(read(vocab_to_tokenizer_json(va)).normalizers, va.normalizers);
}

// A few bytes must not make a vocabulary of millions of placeholder tokens,
// nor nest pre-tokenizers deep enough to exhaust the stack.
TEST(TokenizerJson, RefusesHugeIdsAndDeepNesting) {
  expect_error([] { read(tokenizer_json([](auto& j) { j["added_tokens"][0]["id"] = 10000000; })); },
               "token ids reach 10000000 but only 4 tokens are defined");
  expect_error([] { read(tokenizer_json([](auto& j) { j["added_tokens"][0]["id"] = -1; })); },
               "added_tokens[0].id -1 is out of range");
  nlohmann::json pre = {{"type", "ByteLevel"}};
  for (int i = 0; i < 10; i++) pre = {{"type", "Sequence"}, {"pretokenizers", {pre}}};
  expect_error([&] { read(tokenizer_json([&](auto& j) { j["pre_tokenizer"] = pre; })); },
               "nests pre-tokenizers too deeply");
}

TEST(TokenizerJson, TokenizerConfigFieldsAreChecked) {
  const std::string d = test::temp_dir();
  Vocab v = read(tokenizer_json());
  std::ofstream(d + "/tokenizer_config.json") << R"({"eos_token": {"content": "<|eos|>"}, "add_bos_token": false})";
  apply_hf_tokenizer_config(v, d);
  EXPECT_EQ(v.eos, 3);
  std::ofstream(d + "/tokenizer_config.json") << R"({"bos_token": {"content": 5}})";
  expect_error([&] { apply_hf_tokenizer_config(v, d); }, "tokenizer_config.json: field bos_token.content must be a string");
  std::ofstream(d + "/tokenizer_config.json") << R"({"bos_token": 5})";
  expect_error([&] { apply_hf_tokenizer_config(v, d); }, "tokenizer_config.json: field bos_token must be a string or an object");
}

}  // namespace
}  // namespace lmpress
