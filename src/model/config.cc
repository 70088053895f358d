#include "model/config.h"

#include <cmath>

#include "core/error.h"

namespace lmpress {

void ModelConfig::validate(const std::string& src) const {
  auto range = [&](const char* name, int64_t v, int64_t lo, int64_t hi) {
    if (v < lo || v > hi) fail("{}: {} = {} is out of range [{}, {}]", src, name, v, lo, hi);
  };
  if (arch != "llama" && arch != "qwen2") fail("{}: unknown architecture '{}'", src, arch);
  range("vocab_size", n_vocab, 1, 1 << 24);
  range("hidden_size", dim, 1, 1 << 17);
  range("num_hidden_layers", n_layers, 1, 1024);
  range("num_attention_heads", n_heads, 1, 4096);
  range("num_key_value_heads", n_kv_heads, 1, n_heads);
  range("head_dim", head_dim, 2, 4096);
  range("intermediate_size", ffn_dim, 1, 1 << 20);
  range("max_position_embeddings", ctx_len, 1, 1 << 24);
  range("rope dimension count", rope_dim, 2, head_dim);
  if (head_dim % 2 || rope_dim % 2) fail("{}: head_dim {} / rope dim {} must be even", src, head_dim, rope_dim);
  if (n_heads % n_kv_heads) fail("{}: num_attention_heads {} is not a multiple of num_key_value_heads {}", src, n_heads, n_kv_heads);
  if (!(rms_eps > 0 && rms_eps < 1)) fail("{}: rms_norm_eps {} is out of range", src, rms_eps);
  if (!(rope_theta > 1)) fail("{}: rope_theta {} is out of range", src, rope_theta);
  if (!rope_scaling.empty() && rope_scaling != "linear" && rope_scaling != "llama3")
    fail("{}: rope_scaling type '{}' is not supported (linear, llama3)", src, rope_scaling);
  if (!rope_scaling.empty() && !(rope_factor > 0)) fail("{}: rope_scaling factor {} must be > 0", src, rope_factor);
}

std::vector<float> ModelConfig::rope_inv_freqs() const {
  std::vector<float> f(size_t(rope_dim / 2));
  for (size_t i = 0; i < f.size(); i++) {
    double freq = std::pow(double(rope_theta), -2.0 * double(i) / double(rope_dim));
    if (rope_scaling == "linear") {
      freq /= rope_factor;
    } else if (rope_scaling == "llama3") {
      // Hugging Face's _compute_llama3_parameters.
      const double low_wavelen = double(rope_orig_ctx) / rope_low_freq_factor;
      const double high_wavelen = double(rope_orig_ctx) / rope_high_freq_factor;
      const double wavelen = 2 * M_PI / freq;
      if (wavelen > low_wavelen) {
        freq /= rope_factor;
      } else if (wavelen >= high_wavelen) {
        double smooth = (double(rope_orig_ctx) / wavelen - rope_low_freq_factor) /
                        (rope_high_freq_factor - rope_low_freq_factor);
        freq = (1 - smooth) * freq / rope_factor + smooth * freq;
      }
    }
    f[i] = float(freq);
  }
  return f;
}

}  // namespace lmpress
