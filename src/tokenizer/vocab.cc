#include "tokenizer/vocab.h"

#include "core/error.h"

namespace lmpress {

void Vocab::validate(const std::string& source) const {
  if (tokens.empty()) fail("{}: tokenizer has an empty vocabulary", source);
  if (model != "llama" && model != "gpt2" && model != "gemma4")
    fail("{}: tokenizer model '{}' is not supported (llama, gpt2, gemma4)", source, model);
  if (!scores.empty() && scores.size() != tokens.size())
    fail("{}: tokenizer has {} scores for {} tokens", source, scores.size(), tokens.size());
  if (!types.empty() && types.size() != tokens.size())
    fail("{}: tokenizer has {} token types for {} tokens", source, types.size(), tokens.size());
  const int64_t n = int64_t(tokens.size());
  for (auto [id, what] : {std::pair{bos, "bos"}, {eos, "eos"}, {unk, "unknown"}, {pad, "padding"}})
    if (id < -1 || id >= n) fail("{}: tokenizer {} token id {} is outside the vocabulary of {}", source, what, id, n);
  if (add_bos && bos < 0) fail("{}: tokenizer adds BOS but has no BOS token", source);
}

}  // namespace lmpress
