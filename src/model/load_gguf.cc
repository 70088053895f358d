// GGUF model loading: llama.cpp's metadata keys ({arch}.embedding_length, ...).
#include "core/error.h"
#include "io/gguf.h"
#include "io/tokenizer_files.h"
#include "model/model.h"

namespace lmpress {

std::unique_ptr<Model> load_gguf_model(const std::string& path) {
  GGUFFile g = GGUFFile::open(path);
  auto m = std::make_unique<Model>();
  m->path = path;
  m->format = "gguf";
  std::string arch = g.req_string("general.architecture");
  auto& c = m->cfg;
  if (arch == "llama") {
    c.arch = "llama";
    c.rope_layout = RopeLayout::Interleaved;
  } else if (arch == "qwen2") {
    c.arch = "qwen2";
    c.rope_layout = RopeLayout::Halves;
  } else {
    fail("{}: unknown architecture '{}' (supported: llama, qwen2)", path, arch);
  }
  const std::string k = arch + ".";
  c.dim = g.req_int(k + "embedding_length");
  c.n_layers = g.req_int(k + "block_count");
  c.ffn_dim = g.req_int(k + "feed_forward_length");
  c.n_heads = g.req_int(k + "attention.head_count");
  c.n_kv_heads = g.get_int(k + "attention.head_count_kv").value_or(c.n_heads);
  c.ctx_len = g.req_int(k + "context_length");
  c.rms_eps = float(g.get_float(k + "attention.layer_norm_rms_epsilon").value_or(1e-5));
  c.rope_theta = float(g.get_float(k + "rope.freq_base").value_or(10000.0));
  c.head_dim = g.get_int(k + "attention.key_length").value_or(c.n_heads > 0 ? c.dim / c.n_heads : 0);
  if (auto vl = g.get_int(k + "attention.value_length"); vl && *vl != c.head_dim)
    fail("{}: key_length {} != value_length {} is not supported", path, c.head_dim, *vl);
  c.rope_dim = g.get_int(k + "rope.dimension_count").value_or(c.head_dim);
  if (auto st = g.get_string(k + "rope.scaling.type"); st && *st != "none") {
    if (*st != "linear") fail("{}: rope scaling type '{}' is not supported", path, *st);
    c.rope_scaling = "linear";
    c.rope_factor = float(g.get_float(k + "rope.scaling.factor").value_or(1.0));
  }
  if (auto f = g.get_float("lmpress.rope_scaling.llama3.factor")) {
    // Llama 3 scaling parameters, recorded by lmpress beside llama.cpp's rope_freqs tensor.
    c.rope_scaling = "llama3";
    c.rope_factor = float(*f);
    c.rope_low_freq_factor = float(g.get_float("lmpress.rope_scaling.llama3.low_freq_factor").value_or(1.0));
    c.rope_high_freq_factor = float(g.get_float("lmpress.rope_scaling.llama3.high_freq_factor").value_or(4.0));
    c.rope_orig_ctx = g.get_int("lmpress.rope_scaling.llama3.original_context_length").value_or(8192);
  }
  m->tensors = g.tensors();
  const Tensor* emb = m->find("token_embd.weight");
  if (!emb) fail("{}: missing tensor token_embd.weight", path);
  c.n_vocab = g.get_int(k + "vocab_size").value_or(emb->shape[0]);
  c.tied_embeddings = m->find("output.weight") == nullptr;
  c.qkv_bias = m->find("blk.0.attn_q.bias") != nullptr;
  if (g.find("tokenizer.ggml.model")) {
    m->tokenizer = Tokenizer::create(vocab_from_gguf(g), path);
    c.bos_id = m->tokenizer->vocab().bos;
    c.eos_id = m->tokenizer->vocab().eos;
  }
  m->bind();
  return m;
}

}  // namespace lmpress
