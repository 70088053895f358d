// Names of tensors in llama.cpp's layout (blk.N.attn_q.weight, ...), which
// lmpress uses whatever file a model came from.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <utility>

namespace lmpress {

// The layer index N of a "blk.N.*" tensor name, or -1 for any other name.
int64_t layer_of(const std::string& name);

// The per-expert name of expert e of `stacked` (blk.N.ffn_up_exps.weight ->
// blk.N.ffn_up.E.weight), and back: the stacked tensor's name and the expert
// of a per-expert name, nullopt for any other name.
std::string expert_tensor_name(const std::string& stacked, int64_t e);
std::optional<std::pair<std::string, int64_t>> stacked_expert_name(const std::string& name);
// A mixture of experts' router (blk.N.ffn_gate_inp.weight): kept f32, never pruned.
bool is_router(const std::string& name);
// gpt-oss's norm before the feed-forward: lmpress's blk.N.ffn_norm.weight is llama.cpp's blk.N.post_attention_norm.weight.
inline constexpr const char* kGptOssFfnNormGguf = ".post_attention_norm.weight";
inline constexpr const char* kFfnNorm = ".ffn_norm.weight";
// name with its suffix `from` replaced by `to` (unchanged when it does not end so).
std::string replace_suffix(const std::string& name, const std::string& from, const std::string& to);

}  // namespace lmpress
