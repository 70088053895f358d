// Text normalization before tokenization, as Hugging Face tokenizers' `normalizer`
// steps define it (NFC/NFD/NFKC/NFKD, Lowercase, StripAccents, Strip, Replace,
// Prepend), applied in order to each fragment of plain text (special tokens are
// split off first, as HF does for added tokens with normalized: false).
// Unicode data comes from utf8proc; invalid UTF-8 bytes pass through unchanged.
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace lmpress {

struct NormalizerStep {
  enum class Kind { NFC, NFD, NFKC, NFKD, Lowercase, StripAccents, Strip, Replace, Prepend };
  Kind kind = Kind::NFC;
  std::string pattern;  // Replace: the string or regex replaced; Prepend: the text put before
  std::string content;  // Replace: what replaces each match (literally)
  bool regex = false;   // Replace: `pattern` is a regex (HF's {"Regex": ...})
  bool left = true, right = true;  // Strip: which ends lose their whitespace
  bool operator==(const NormalizerStep&) const = default;
};

// HF's name for a step kind ("NFKC", "Lowercase", ...).
const char* normalizer_kind_name(NormalizerStep::Kind k);

class Normalizer {
 public:
  // Compiles Replace regexes; `source` names the file in errors.
  Normalizer(std::vector<NormalizerStep> steps, const std::string& source);
  ~Normalizer();
  Normalizer(const Normalizer&) = delete;
  Normalizer& operator=(const Normalizer&) = delete;
  std::string apply(std::string_view text) const;

 private:
  struct Compiled;
  std::vector<NormalizerStep> steps_;
  std::string source_;
  std::vector<std::unique_ptr<Compiled>> compiled_;  // one per step (null but for regex Replace)
};

}  // namespace lmpress
