#include "tokenizer/pre_tokenizers.h"

namespace lmpress {

// The regexes are llama.cpp's (llama-vocab.cpp, llm_tokenizer_bpe), code points written as PCRE escapes so that no
// editor normalises them. Where llama.cpp splits with its own code instead of a regex (kimi-k2, afmoe and tiny_aya's
// digits) or runs std::regex, whose \d is ASCII only (superbpe), the regex here does what that code does.
// tests/pretokenizer_cases_test.cc holds every name to llama.cpp's pieces and ids.
const char* const kGpt2Regex = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S))";

namespace {

#define LMP_CONTRACTIONS R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD]))"
#define LMP_SPACES R"(|\s*[\r\n]+|\s+(?!\S)|\s+)"
const char* const kLlama3 =
    LMP_CONTRACTIONS R"(|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*)" LMP_SPACES;
const char* const kQwen2 = LMP_CONTRACTIONS R"(|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*)" LMP_SPACES;
// Letters with their combining marks.
const char* const kQwen35 =
    LMP_CONTRACTIONS R"(|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*)" LMP_SPACES;
// GPT-4o's o200k as tokenizer.json spells it: case-aware words with their contractions, digits in threes,
// punctuation with trailing newlines or slashes.
const char* const kGpt4oHf =
    R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?)"
    R"(|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?)"
    R"(|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*)" LMP_SPACES;
// llama.cpp's rewrite of it: "upper" is any letter but a-z, "lower" any letter but A-Z.
const char* const kGpt4o = R"([^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+)" LMP_CONTRACTIONS
                           R"(?|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*)" LMP_CONTRACTIONS
                           R"(?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*)" LMP_SPACES;
// The same with combining marks counted as letters.
const char* const kGraniteMulti =
    R"([^\r\n\p{L}\p{N}]?((?=[\p{L}\p{M}])([^a-z]))*((?=[\p{L}\p{M}])([^A-Z]))+)" LMP_CONTRACTIONS
    R"(?|[^\r\n\p{L}\p{N}]?((?=[\p{L}\p{M}])([^a-z]))+((?=[\p{L}\p{M}])([^A-Z]))*)" LMP_CONTRACTIONS
    R"(?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*)" LMP_SPACES;
const char* const kTekkenHf = R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+)"
                              R"(|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*)"
                              R"(|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*)" LMP_SPACES;
const char* const kTekken = R"([^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+)"
                            R"(|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*)"
                            R"(|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*)" LMP_SPACES;
// Case-aware words as tokenizer.json spells them (Youtu, Tiny Aya)...
#define LMP_CASED_WORDS                                                                              \
  R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+)" LMP_CONTRACTIONS \
  R"(?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*)" LMP_CONTRACTIONS "?"
// ...and as llama.cpp runs them: its regex engine has one class for all letters, so the case split is gone.
#define LMP_LETTER_WORDS R"([^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+)" LMP_CONTRACTIONS "?"
// After the words: digits alone (Youtu) or in threes (Tiny Aya).
#define LMP_YOUTU_REST R"(|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*)" LMP_SPACES
#define LMP_TINY_AYA_REST R"(|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*)" LMP_SPACES
// Youtu: Hangul, CJK punctuation, Bopomofo, CJK ideographs and kana.
#define LMP_CJK_KANA R"(\x{4E00}-\x{9FA5}\x{3040}-\x{309F}\x{30A0}-\x{30FF})"
const char* const kYoutuCjk =
    R"([\x{AC00}-\x{D7A3}\x{3131}-\x{318E}]+)"
    R"(|[\x{FF01}\x{2026}\x{201C}\x{201D}\x{2018}\x{2019}\x{2014}\x{FF1A}\x{FF1B}\x{FF0C}\x{3001}-\x{303F})"
    R"(\x{FE30}-\x{FE4F}]+|[\x{3105}-\x{312F}]+|[)" LMP_CJK_KANA "]+";
// Runs of digits in groups of three from the right (llama.cpp's AFMoE digit splitter, which it also runs for
// Tiny Aya's "\d{1,3}(?=(?:\d{3})*\b)").
const char* const kDigitThreesFromRight = R"(\p{N}{1,3}(?=(?:\p{N}{3})*(?!\p{N})))";
// GPT-2's regex for words; digits alone before it.
const char* const kDigit = R"(\p{N})";
// DeepSeek: CJK ideographs, kana; the rest by letters with marks and punctuation with symbols.
// llama.cpp runs a regex without \p{..} classes on text whose non-ASCII spaces it has made U+000B, so its ranges
// never match those: they are cut out of the ranges here.
const char* const kDeepseekCjk =
    R"([\x{4E00}-\x{9FA5}\x{800}-\x{167F}\x{1681}-\x{1FFF}\x{200B}-\x{2027}\x{202A}-\x{202E}\x{2030}-\x{205E})"
    R"(\x{2060}-\x{2FFF}\x{3001}-\x{4E00}\x{AC00}-\x{D7FF}]+)";
const char* const kDeepseek3Cjk = "[" LMP_CJK_KANA "]+";
#define LMP_DEEPSEEK3_WORDS \
  R"([!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+)"
const char* const kDeepseekLetters =
    R"(\s?[A-Za-z\x{B5}\x{C0}-\x{D6}\x{D8}-\x{F6}\x{F8}-\x{1BA}\x{1BC}-\x{1BF}\x{1C4}-\x{293}\x{295}-\x{2AF})"
    R"(\x{370}-\x{373}\x{376}\x{377}\x{37B}-\x{37D}\x{37F}\x{386}\x{388}-\x{38A}\x{38C}\x{38E}-\x{3A1})"
    R"(\x{3A3}-\x{3F5}\x{3F7}-\x{481}\x{48A}-\x{52F}\x{531}-\x{556}\x{10A0}-\x{10C5}\x{13A0}-\x{13F5})"
    R"(\x{13F8}-\x{13FD}\x{1C90}-\x{1CBA}\x{1CBD}-\x{1CBF}\x{1D00}-\x{1D2B}\x{1D6B}-\x{1D77}\x{1D79}-\x{1D9A})"
    R"(\x{1E00}-\x{1F15}\x{1F18}-\x{1F1D}\x{1F20}-\x{1F45}\x{1F48}-\x{1F4D}\x{1F50}-\x{1F57}\x{1F59}\x{1F5B})"
    R"(\x{1F5D}\x{1F5F}-\x{1F7D}\x{1F80}-\x{1FB4}\x{1FB6}-\x{1FBC}\x{1FBE}\x{1FC2}-\x{1FC4}\x{1FC6}-\x{1FCC})"
    R"(\x{1FD0}-\x{1FD3}\x{1FD6}-\x{1FDB}\x{1FE0}-\x{1FEC}\x{1FF2}-\x{1FF4}\x{1FF6}-\x{1FFC}\x{2102}\x{2107})"
    R"(\x{210A}-\x{2113}\x{2115}\x{2119}-\x{211D}\x{2124}\x{2126}\x{2128}\x{212A}-\x{212D}\x{212F}-\x{2134})"
    R"(\x{2139}\x{213C}-\x{213F}\x{2145}-\x{2149}\x{214E}\x{2183}\x{2184}\x{2C00}-\x{2C7B}\x{2C7E}-\x{2CE4})"
    R"(\x{2CEB}-\x{2CEE}\x{2CF2}\x{2CF3}\x{A640}-\x{A66D}\x{A680}-\x{A69B}\x{A722}-\x{A76F}\x{A771}-\x{A787})"
    R"(\x{A78B}-\x{A78E}\x{AB70}-\x{ABBF}\x{FB00}-\x{FB06}\x{FB13}-\x{FB17}\x{FF21}-\x{FF3A}\x{FF41}-\x{FF5A})"
    R"(\x{10400}-\x{1044F}\x{104B0}-\x{104D3}\x{104D8}-\x{104FB}\x{10C80}-\x{10CB2}\x{10CC0}-\x{10CF2})"
    R"(\x{118A0}-\x{118DF}\x{1E900}-\x{1E943}]+)";
// Words up to the first of a few punctuation marks (Bloom, Poro, GPT-3 Finnish, Viking).
const char* const kBloom = R"( ?[^(\s|.,!?\x{2026}\x{3002}\x{FF0C}\x{3001}\x{964}\x{6D4}\x{60C})]+)";
// Kimi K2: runs of Han ideographs (llama.cpp's unicode_cpt_is_han ranges), then o200k-style words of other letters.
#define LMP_HAN \
  R"(\x{4E00}-\x{9FFF}\x{3400}-\x{4DBF}\x{20000}-\x{2A6DF}\x{2A700}-\x{2EBEF}\x{F900}-\x{FAFF}\x{2F800}-\x{2FA1F})"
const char* const kKimiK2 = "[" LMP_HAN R"(]+|[^\r\n\p{L}\p{N}]?(?:(?![)" LMP_HAN R"(])\p{L})+)" LMP_CONTRACTIONS
                            R"(?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*)" LMP_SPACES;
const char* const kAfmoeScripts =
    R"([\x{4E00}-\x{9FFF}\x{3400}-\x{4DBF}\x{8C48}-\x{FAFF}\x{3040}-\x{309F}\x{30A0}-\x{30FF}\x{FF65}-\x{FF9F})"
    R"(\x{2F00}-\x{2FDF}\x{E40}-\x{E7F}\x{E80}-\x{EFF}\x{1780}-\x{17FF}\x{1000}-\x{109F}\x{AA60}-\x{AA7F})"
    R"(\x{A9E0}-\x{A9FF}\x{AC00}-\x{D7AF}\x{1100}-\x{11FF}]+)";
const char* const kJais2 = LMP_CONTRACTIONS
    R"(|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s{512}(?!\S)|\s{256}(?!\S))"
    R"(|\s{128}(?!\S)|\s{64}(?!\S)|\s{32}(?!\S)|\s{16}(?!\S)|\s{8}(?!\S)|\s{4}(?!\S)|\s{1,2}(?!\S)|\s{1})";
const char* const kNewlineRuns = R"([^\n]+|[\n]+)";

}  // namespace

// The entries name only the fields that differ from the defaults.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
const std::vector<PreTokenizer>& pre_tokenizers() {
  static const std::vector<PreTokenizer> t = {
      {.names = {"gpt-2", "mpt", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de", "a.x-4.0",
                 "mellum", "modern-bert", "jina-v1-en", "jina-v2-code", "roberta-bpe", "exaone4", "olmo", "jais",
                 "trillion", "granite-docling"},
       .regexes = {kGpt2Regex}},
      {.names = {"llama-bpe", "llama3", "llama-v3", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2",
                 "jina-v5-nano"},
       .regexes = {kLlama3},
       .ignore_merges = true,
       .add_bos = true},
      {.names = {"dbrx", "smaug-bpe", "glm4", "chatglm-bpe"}, .regexes = {kLlama3}},
      {.names = {"qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "megrez", "stablelm2", "hunyuan", "grok-2",
                 "solar-open"},
       .regexes = {kQwen2}},
      {.names = {"qwen35"}, .regexes = {kQwen35}},
      {.names = {"smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b", "mellum2"},
       .regexes = {kDigit, kGpt2Regex}},
      {.names = {"default"}, .regexes = {R"([\p{P}\$\+<=>\^~\|]+)", kGpt2Regex, R"(\p{N}+)", "[0-9][0-9][0-9]"}},
      {.names = {"falcon"}, .regexes = {R"([\p{P}\$\+<=>\^~\|`]+)", kGpt2Regex, "[0-9][0-9][0-9]"}},
      {.names = {"deepseek-llm"},
       .regexes = {R"([\r\n])", kDeepseekLetters,
                   R"(\s?[!-/:-~\x{FF01}-\x{FF0F}\x{FF1A}-\x{FF5E}\x{2018}-\x{201F}\x{3001}-\x{3002}]+)", R"(\s+$)",
                   kDeepseekCjk, R"(\p{N}+)"}},
      {.names = {"deepseek-coder"}, .regexes = {R"([\r\n])", R"(\s?\p{L}+)", R"(\s?\p{P}+)", kDeepseekCjk, kDigit}},
      {.names = {"deepseek-v3", "hunyuan-dense", "hy_v4", "joyai-llm"},
       .regexes = {R"(\p{N}{1,3})", kDeepseek3Cjk, LMP_DEEPSEEK3_WORDS R"([\r\n]*)" LMP_SPACES}},
      {.names = {"spark2_5"},
       .regexes = {R"(\p{N}{1,3})", kDeepseek3Cjk, LMP_DEEPSEEK3_WORDS R"(|[\r\n]|\s+(?!\S)|\s+)", kDigit}},
      {.names = {"youtu"},
       .regexes = {kYoutuCjk, LMP_LETTER_WORDS LMP_YOUTU_REST},
       .ignore_merges = true,
       .hf_regexes = {kYoutuCjk, LMP_CASED_WORDS LMP_YOUTU_REST}},
      {.names = {"jais-2"}, .regexes = {kJais2}},
      {.names = {"bloom", "poro-chat", "gpt3-finnish"}, .regexes = {kBloom}},
      {.names = {"viking"}, .regexes = {kBloom, kDigit}},
      {.names = {"tekken"}, .regexes = {kTekken}, .ignore_merges = true, .add_bos = true, .hf_regexes = {kTekkenHf}},
      {.names = {"chameleon"},
       .regexes = {"<sentinel:[0-9]+>", "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z", R"(([\t\n]|    |  ))", kDigit,
                   R"([\p{P}!-/:-@\[-`{-~])", kGpt2Regex},
       .add_bos = true},
      {.names = {"gpt-4o", "llama4", "kanana2", "talkie", "minimax-m2"}, .regexes = {kGpt4o}, .hf_regexes = {kGpt4oHf}},
      {.names = {"granite-embed-multi-97m"}, .regexes = {kGraniteMulti}, .ignore_merges = true},
      {.names = {"tiny_aya", "cohere2moe"},
       .regexes = {kDigitThreesFromRight, LMP_LETTER_WORDS LMP_TINY_AYA_REST},
       .hf_regexes = {R"(\d{1,3}(?=(?:\d{3})*\b))", LMP_CASED_WORDS LMP_TINY_AYA_REST}},
      {.names = {"kimi-k2"}, .regexes = {kKimiK2}},
      {.names = {"superbpe"}, .regexes = {R"(\p{N}+)", "(?=([0-9]{3})+(?![0-9]))"}},
      {.names = {"bailingmoe", "bailingmoe2", "llada-moe"},
       .regexes =
           {R"('(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*)"
            R"(|\s*[\r\n]|\s+(?!\S)|\s+)"}},
      {.names = {"seed-coder"},
       .regexes = {LMP_CONTRACTIONS R"(|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+)" LMP_SPACES}},
      {.names = {"ufakzeka"}, .regexes = {R"([^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*)" LMP_SPACES}},
      {.names = {"afmoe"},
       .regexes = {kDigitThreesFromRight, kAfmoeScripts, LMP_DEEPSEEK3_WORDS R"([\r\n]*)" LMP_SPACES}},
      {.names = {"laguna"}, .regexes = {kNewlineRuns, kQwen2}},
      {.names = {"exaone-moe"},
       .regexes = {LMP_CONTRACTIONS
                   R"(|[^\r\n\p{L}\p{N}]?(?:\p{L}\p{M}*(?: \p{L}\p{M}*)*)+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]?)"
                   R"(|\s*[\r\n]|\s+(?!\S)|\s+)"}},
      {.names = {"minicpm5"},
       .regexes = {R"(\p{N}{1,3})",
                   LMP_CONTRACTIONS R"(|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}+| ?[^\s\p{L}\p{N}]+[\r\n]*)" LMP_SPACES},
       .ignore_merges = true},
      {.names = {"gemma4", "granite-embed-multi-311m"}, .regexes = {kNewlineRuns}, .raw = true, .newline_tokens = true},
      {.names = {"sarvam-moe"}, .regexes = {kNewlineRuns}, .raw = true},
  };
  return t;
}
#pragma GCC diagnostic pop

namespace {

// Hugging Face writes contractions case-insensitively and GPT-2's regex with a trailing "|\s+"; both tokenize as
// llama.cpp's spelling.
std::string normalize_regex(std::string r) {
  const std::string hf_contractions = "(?i:'s|'t|'re|'ve|'m|'ll|'d)";
  for (size_t at; (at = r.find(hf_contractions)) != std::string::npos;)
    r.replace(at, hf_contractions.size(), LMP_CONTRACTIONS);
  if (r == std::string(kGpt2Regex) + R"(|\s+)") r = kGpt2Regex;
  return r;
}

std::vector<std::string> normalized(const std::vector<std::string>& regexes) {
  std::vector<std::string> out;
  for (const auto& r : regexes) out.push_back(normalize_regex(r));
  return out;
}

}  // namespace

const PreTokenizer* find_pre_tokenizer(const std::string& name) {
  const std::string n = name.empty() ? "default" : name;
  for (const auto& p : pre_tokenizers())
    for (const auto& alias : p.names)
      if (alias == n) return &p;
  return nullptr;
}

std::string pre_tokenizer_name(const std::vector<std::string>& regexes, bool ignore_merges) {
  const std::vector<std::string> want = normalized(regexes);
  const PreTokenizer* found = nullptr;
  for (const auto& p : pre_tokenizers()) {
    if (want != p.regexes && (p.hf_regexes.empty() || want != normalized(p.hf_regexes))) continue;
    if (p.ignore_merges == ignore_merges) return p.names[0];
    if (!found) found = &p;
  }
  return found ? found->names[0] : "";
}

}  // namespace lmpress
