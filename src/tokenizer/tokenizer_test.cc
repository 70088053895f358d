#include "tokenizer/tokenizer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <fstream>

#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/mapped_file.h"
#include "io/tokenizer_files.h"
#include "model/model.h"
#include "synthetic_model.h"
#include "test_util.h"
#include "tokenizer/byte_bpe.h"
#include "tokenizer/pre_tokenizers.h"

namespace lmpress {
namespace {

std::vector<std::string> pieces(const ByteBpeTokenizer& t, const std::string& text) {
  std::vector<std::string> out;
  for (auto p : t.pretokenize(text)) out.emplace_back(p);
  return out;
}

Vocab byte_vocab(const std::string& pre) {
  Vocab v;
  v.model = "gpt2";
  v.pre = pre;
  for (int i = 0; i < 300; i++) v.tokens.push_back("t" + std::to_string(i));
  return v;
}

TEST(ByteBpe, PreTokenizerRegexesSplitLikeLlamaCpp) {
  ByteBpeTokenizer gpt2(byte_vocab("gpt-2"), "t");
  // "\s+(?!\S)" leaves the last space of a run to the following word.
  EXPECT_EQ(pieces(gpt2, "Hello world's  123 x!?"),
            (std::vector<std::string>{"Hello", " world", "'s", " ", " 123", " x", "!?"}));
  ByteBpeTokenizer llama3(byte_vocab("llama-bpe"), "t");
  EXPECT_EQ(pieces(llama3, "I'M 1234567 ok\n\nyes"),
            (std::vector<std::string>{"I", "'M", " ", "123", "456", "7", " ok", "\n\n", "yes"}));
  ByteBpeTokenizer qwen(byte_vocab("qwen2"), "t");
  EXPECT_EQ(pieces(qwen, "ab 12"), (std::vector<std::string>{"ab", " ", "1", "2"}));
  ByteBpeTokenizer smol(byte_vocab("smollm"), "t");
  EXPECT_EQ(pieces(smol, "x 42"), (std::vector<std::string>{"x", " ", "4", "2"}));
  EXPECT_THROW(ByteBpeTokenizer(byte_vocab("no-such-pre"), "t"), Error);
}

// GPT-4o's pre-tokenizer (gpt-oss's o200k) as a tokenizer.json gives it, against Python's `regex` module running
// the pattern of gpt-oss's tokenizer.json (copied here from it, as llama.cpp's llama-vocab.cpp quotes it;
// python3-regex): cases, contractions, digits, CJK, combining marks, newlines. A tokenizer.json with that pattern
// is named gpt-4o (a GGUF named so runs llama.cpp's rewrite of it: tests/pretokenizer_cases_test.cc).
TEST(ByteBpe, Gpt4oPreTokenizerSplitsAsPythonRegex) {
  const std::vector<std::string> texts = {
      "HelloWorld don't I'M JSONParser 1234567 x!?\n\n/path/to  ok", "Ça va? naïve café ÉCOLE", "数学 テスト 한국어 123abc",
      "tabs\tand  spaces   end ", "a\r\nb\n\n\nc", "'s 'T 're", "e\u0301cole MAcDonald's"};
  const std::string d = test::temp_dir();
  std::ofstream(d + "/in.json") << nlohmann::json(texts).dump();
  std::ofstream(d + "/split.py")
      << "import json, sys, regex\n"
         "pat = regex.compile(open(sys.argv[2], encoding='utf-8').read())\n"
         "print(json.dumps([pat.findall(t) for t in json.load(open(sys.argv[1]))]))\n";
  const std::string o200k =
      R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|)"
      R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|)"
      R"(\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
  std::ofstream(d + "/pattern.txt") << o200k;
  EXPECT_EQ(pre_tokenizer_name({o200k}), "gpt-4o");
  const auto r = test::shell("/usr/bin/python3 " + d + "/split.py " + d + "/in.json " + d + "/pattern.txt 2>&1");
  ASSERT_EQ(r.status, 0) << "python3-regex is needed (scripts/setup.sh): " << r.out;
  const auto want = nlohmann::json::parse(r.out);
  Vocab from_json = byte_vocab("gpt-4o");
  from_json.pre_regexes = {o200k};
  ByteBpeTokenizer oss(from_json, "t");
  for (size_t i = 0; i < texts.size(); i++) {
    EXPECT_EQ(pieces(oss, texts[i]), want[i].get<std::vector<std::string>>()) << texts[i];
  }
  EXPECT_EQ(pieces(oss, "HelloWorld"), (std::vector<std::string>{"Hello", "World"}));  // by hand
}

TEST(ByteBpe, NamesRoundTrip) {
  std::set<std::string> seen;
  for (const PreTokenizer& p : pre_tokenizers()) {
    for (const auto& n : p.names) {
      EXPECT_TRUE(seen.insert(n).second) << n << " named twice";
      EXPECT_EQ(find_pre_tokenizer(n), &p) << n;
    }
    // Byte-level ones have a tokenizer.json spelling that maps back to them.
    if (!p.raw) {
      EXPECT_EQ(pre_tokenizer_name(p.regexes, p.ignore_merges), p.names[0]);
      if (!p.hf_regexes.empty()) {
        EXPECT_EQ(pre_tokenizer_name(p.hf_regexes, p.ignore_merges), p.names[0]);
      }
    }
  }
  EXPECT_EQ(find_pre_tokenizer(""), find_pre_tokenizer("default"));
  EXPECT_EQ(find_pre_tokenizer("whitespace"), nullptr);
  // The Llama 3 regex is llama-bpe with ignore_merges (as Llama 3's tokenizer.json), dbrx without.
  EXPECT_EQ(pre_tokenizer_name(find_pre_tokenizer("llama3")->regexes, false), "dbrx");
  // Hugging Face's spelling of the Llama 3 regex maps to llama.cpp's name.
  EXPECT_EQ(pre_tokenizer_name({R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"}, true),
            "llama-bpe");
  EXPECT_EQ(pre_tokenizer_name({"abc"}), "");
}

// The synthetic tokenizer.json: 256 byte tokens, merges "Ġ t" < "h e" < "Ġt he" < "i n".
TEST(ByteBpe, MergesByRankFromTokenizerJson) {
  std::string dir = test::temp_dir();
  test::write_synthetic_hf(dir, {});
  Vocab v = vocab_from_tokenizer_json(dir + "/tokenizer.json");
  apply_hf_tokenizer_config(v, dir);
  EXPECT_EQ(v.pre, "gpt-2");
  EXPECT_EQ(v.bos, 260);
  EXPECT_TRUE(v.add_bos);
  auto tok = Tokenizer::create(v, dir);
  // "in" -> 259; " the": Ġ t -> Ġt; h e -> he; Ġt he -> Ġthe (258).
  EXPECT_EQ(tok->encode("in the", true, false), (std::vector<int32_t>{260, 259, 258}));
  // Bytes with no merges map to their byte tokens: 'x' = 120; é = C3 A9.
  EXPECT_EQ(tok->encode("x\xc3\xa9", false, false), (std::vector<int32_t>{120, 0xc3, 0xa9}));
  EXPECT_EQ(tok->encode("a<|eos|>", false, true), (std::vector<int32_t>{97, 261}));
  EXPECT_EQ(tok->encode("a<|eos|>", false, false).size(), 8u);  // parsed as text
  EXPECT_EQ(tok->decode(tok->encode("in the x\xc3\xa9\n", true, false)), "in the x\xc3\xa9\n");
  // tokenizer.json written back reads the same.
  std::string back = test::temp_dir() + "/tokenizer.json";
  write_file_atomic(back, vocab_to_tokenizer_json(v));
  Vocab v2 = vocab_from_tokenizer_json(back);
  EXPECT_EQ(v2.tokens, v.tokens);
  EXPECT_EQ(v2.merges, v.merges);
  EXPECT_EQ(v2.pre, "gpt-2");
}

// Ranks first, the leftmost of equal ranks next, on one pre-token of 100001
// letters: the rescan-every-pair merge loop took minutes on such a word.
TEST(ByteBpe, LongWordMergesByRankLeftmostFirstInLinearishTime) {
  Vocab v;
  v.model = "gpt2";
  v.pre = "gpt-2";
  v.tokens = {"a", "b", "aa", "aaaa", "aaaaaaaa", "ab"};
  v.types.assign(v.tokens.size(), TokenType::Normal);
  v.merges = {"a a", "aa aa", "aaaa aaaa", "a b"};
  auto tok = Tokenizer::create(v, "test");
  const std::vector<int32_t> ids = tok->encode("b" + std::string(100001, 'a'), false, false);
  // b, then 100000 a -> 50000 aa -> 25000 aaaa -> 12500 aaaaaaaa, and the odd a last.
  ASSERT_EQ(ids.size(), 12502u);
  EXPECT_EQ(ids.front(), 1);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 4), 12500);
  EXPECT_EQ(ids.back(), 0);
  // "a b" (rank 3) loses to "a a" (rank 0) on its left: aab -> aa b.
  EXPECT_EQ(tok->encode("aab", false, false), (std::vector<int32_t>{2, 1}));
  EXPECT_EQ(tok->encode("ab", false, false), (std::vector<int32_t>{5}));
}

TEST(Spm, ByteFallbackSpecialTokensAndDecode) {
  if (!test::have_shared("models/lmp-8m/tokenizer.model")) GTEST_SKIP();
  Vocab v = vocab_from_sentencepiece(test::shared_path("models/lmp-8m/tokenizer.model"));
  EXPECT_EQ(v.size(), 4096u);
  auto tok = Tokenizer::create(v, "lmp-8m");
  // U+20AC has no piece: three byte tokens.
  auto ids = tok->encode("\xe2\x82\xac", false, false);
  ASSERT_GE(ids.size(), 3u);
  std::vector<int32_t> tail(ids.end() - 3, ids.end());
  EXPECT_EQ(tail, (std::vector<int32_t>{tok->find("<0xE2>"), tok->find("<0x82>"), tok->find("<0xAC>")}));
  EXPECT_EQ(tok->encode("<s>", false, true), (std::vector<int32_t>{1}));
  EXPECT_NE(tok->encode("<s>", false, false), (std::vector<int32_t>{1}));
  const std::string text = "The kernel's scheduler: 42 tasks\n\tdone \xe2\x82\xac.";
  EXPECT_EQ(tok->decode(tok->encode(text, true, false)), " " + text);  // dummy prefix space
  EXPECT_TRUE(tok->encode("", false, false).empty());
  EXPECT_EQ(tok->encode("", true, false), (std::vector<int32_t>{1}));
  EXPECT_THROW(tok->decode_token(4096), Error);
}

TEST(Spm, SentencePieceWriterRoundTrips) {
  if (!test::have_shared("models/lmp-8m/tokenizer.model")) GTEST_SKIP();
  Vocab v = vocab_from_sentencepiece(test::shared_path("models/lmp-8m/tokenizer.model"));
  Vocab w = vocab_from_sentencepiece_bytes(vocab_to_sentencepiece(v), "rt");
  EXPECT_EQ(w.tokens, v.tokens);
  EXPECT_EQ(w.scores, v.scores);
  EXPECT_EQ(w.types, v.types);
  EXPECT_EQ(w.bos, v.bos);
  EXPECT_EQ(w.eos, v.eos);
  EXPECT_EQ(w.add_space_prefix, v.add_space_prefix);
  EXPECT_THROW(vocab_from_sentencepiece_bytes("\x0a\xff", "bad"), Error);
  EXPECT_THROW(vocab_from_sentencepiece_bytes("", "empty"), Error);
}

// A byte-type piece that is not "<0xHH>" (found by fuzz_sentencepiece: once
// std::stoi's std::invalid_argument) decodes as its own text.
TEST(Spm, MalformedBytePieceDecodesAsItsText) {
  Vocab v;
  v.model = "llama";
  v.tokens = {"<unk>", "<s>", "</s>", "<0x$0>", "<0x41>", "<0x4"};
  v.types = {TokenType::Unknown, TokenType::Control, TokenType::Control, TokenType::Byte, TokenType::Byte,
             TokenType::Byte};
  v.unk = 0, v.bos = 1, v.eos = 2;
  auto tok = Tokenizer::create(v, "spm");
  EXPECT_EQ(tok->decode_token(3), "<0x$0>");
  EXPECT_EQ(tok->decode_token(4), "A");
  EXPECT_EQ(tok->decode_token(5), "<0x4");
}

// Pre-tokenizer regexes come from files (tokenizer.json, GGUF): invalid UTF-8
// in one is an Error, not undefined behaviour in PCRE2.
TEST(ByteBpe, RegexWithInvalidUtf8IsAnError) {
  Vocab v = byte_vocab("gpt-2");
  v.pre_regexes = {"a\xff+"};
  try {
    Tokenizer::create(v, "t.gguf");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("t.gguf: pre-tokenizer regex does not compile"), std::string::npos) << e.what();
  }
}

// The llama2.c tokenizer file and the GGUF's tokenizer tokenize alike.
TEST(Spm, Llama2cTokenizerMatchesGguf) {
  if (!test::have_shared("data/wikitext-2/wiki.test.raw")) GTEST_SKIP();
  auto gguf = load_model(test::shared_path("models/stories260K/stories260K.gguf"));
  Vocab v = vocab_from_llama2c(test::shared_path("models/stories260K/tok512.bin"), 512);
  auto tok = Tokenizer::create(v, "tok512");
  std::string text = read_text_file(test::shared_path("data/wikitext-2/wiki.test.raw")).substr(0, 50000);
  EXPECT_EQ(tok->encode(text, true, false), gguf->tokenizer->encode(text, true, false));
  EXPECT_THROW(vocab_from_llama2c(test::shared_path("models/stories260K/tok512.bin"), 600), Error);
  EXPECT_THROW(vocab_from_llama2c(test::shared_path("models/stories260K/tok512.bin"), 100), Error);
}

}  // namespace
}  // namespace lmpress
