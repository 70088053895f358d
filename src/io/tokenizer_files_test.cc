#include "io/tokenizer_files.h"

#include <gtest/gtest.h>

#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "test_util.h"

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
  expect_error([&] { read(spm([](auto& j) { j["normalizer"]["normalizers"][0] = {{"type", "Lowercase"}}; })); },
               "t/tokenizer.json: normalizer.normalizers[0]: normalizer 'Lowercase' is not supported");
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
  expect_error([] { read(tokenizer_json([](auto& j) { j["normalizer"] = {{"type", "NFKC"}}; })); },
               "normalizer: normalizer 'NFKC' is not supported");
  EXPECT_EQ(read(tokenizer_json([](auto& j) { j["normalizer"] = {{"type", "NFC"}}; })).model, "gpt2");
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
