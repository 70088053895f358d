// Every byte-level BPE pre-tokenizer name llama.cpp knows, held to llama.cpp itself: tests/data/pretokenizer_cases.json
// (written by tests/data/make_pretokenizer_cases.py with libllama) has, for each name set as tokenizer.ggml.pre on
// one of llama.cpp's vocabulary files, the pieces llama.cpp's pre-tokenizer cuts each text into and the ids it gives.
#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>

#include "core/mapped_file.h"
#include "io/gguf.h"
#include "io/tokenizer_files.h"
#include "test_util.h"
#include "tokenizer/byte_bpe.h"
#include "tokenizer/pre_tokenizers.h"

namespace lmpress {
namespace {

void set_key(GGUFFile& g, const std::string& key, const std::string& value) {
  for (auto& [k, v] : g.kv)
    if (k == key) {
      v = GGUFValue::str(value);
      return;
    }
  g.kv.emplace_back(key, GGUFValue::str(value));
}

TEST(PreTokenizerCases, EveryLlamaCppNameSplitsAndTokenizesAsLlamaCpp) {
  const std::string checkout = test::llama_cpp_checkout();
  if (checkout.empty())
    FAIL() << "no llama.cpp checkout (scripts/llama-cpp-src.sh): its vocabulary files are the input";
  const auto cases = nlohmann::json::parse(read_text_file(LMPRESS_SOURCE_DIR "/tests/data/pretokenizer_cases.json"));
  const auto texts = cases["texts"].get<std::vector<std::string>>();
  std::map<std::string, GGUFFile> base;
  for (const auto& [kind, file] : cases["bases"].items())
    base.emplace(kind, GGUFFile::open(checkout + "/models/" + file.get<std::string>()));

  // One name per table entry is run; the others must be what llama.cpp treats alike.
  std::map<const PreTokenizer*, std::string> run;
  for (const auto& [name, c] : cases["pre"].items()) {
    SCOPED_TRACE(name);
    const PreTokenizer* p = find_pre_tokenizer(name);
    ASSERT_NE(p, nullptr) << "llama.cpp knows '" << name << "'";
    if (auto it = run.find(p); it != run.end()) {
      const auto& first = cases["pre"][it->second];
      EXPECT_EQ(c["ids"], first["ids"]) << "llama.cpp tokenizes '" << name << "' unlike '" << it->second << "'";
      EXPECT_EQ(c.value("pieces", -1), first.value("pieces", -1)) << name << " vs " << it->second;
      continue;
    }
    run.emplace(p, name);
    GGUFFile& g = base.at(c["base"].get<std::string>());
    set_key(g, "tokenizer.ggml.pre", name);
    if (c["base"] == "raw") set_key(g, "tokenizer.ggml.model", "gpt2");  // the name alone decides, as the generator
    const auto tok = Tokenizer::create(vocab_from_gguf(g), name);
    const auto* bpe = dynamic_cast<const ByteBpeTokenizer*>(tok.get());
    ASSERT_NE(bpe, nullptr);
    const auto& ids = cases["ids"][c["ids"].get<size_t>()];
    const nlohmann::json* pieces = c.contains("pieces") ? &cases["pieces"][c["pieces"].get<size_t>()] : nullptr;
    int wrong = 0;
    for (size_t i = 0; i < texts.size() && wrong < 5; i++) {
      const std::vector<int32_t> got = tok->encode(texts[i], false, false), want = ids[i];
      if (got != want) {
        wrong++;
        ADD_FAILURE() << "'" << texts[i] << "' gives " << testing::PrintToString(got) << ", llama.cpp "
                      << testing::PrintToString(want);
      }
      if (!pieces) continue;
      std::vector<std::string> cut;
      for (auto piece : bpe->pretokenize(texts[i])) cut.emplace_back(piece);
      if (cut != (*pieces)[i].get<std::vector<std::string>>()) {
        wrong++;
        ADD_FAILURE() << "'" << texts[i] << "' is cut into " << testing::PrintToString(cut) << ", by llama.cpp into "
                      << (*pieces)[i].dump();
      }
    }
  }
  // Every name in the table is one llama.cpp has.
  for (const PreTokenizer& p : pre_tokenizers())
    for (const auto& n : p.names) EXPECT_TRUE(cases["pre"].contains(n)) << n << " is not a name llama.cpp knows";
  EXPECT_EQ(run.size(), pre_tokenizers().size());
}

}  // namespace
}  // namespace lmpress
