// llama2.c legacy checkpoints: a 7-int header then f32 arrays in a fixed
// order, all layers of one kind together. A negative vocab size means the
// classifier is stored separately (untied).
#include <cstring>

#include "core/error.h"
#include "core/mapped_file.h"
#include "io/tokenizer_files.h"
#include "model/model.h"

namespace lmpress {

std::unique_ptr<Model> load_llama2c_model(const std::string& path, const std::string& tokenizer_path) {
  auto f = MappedFile::open(path);
  if (f->size() < 28) fail("{}: too small for a llama2.c checkpoint ({} bytes)", path, f->size());
  int32_t h[7];
  std::memcpy(h, f->data(), 28);
  auto m = std::make_unique<Model>();
  m->path = path;
  m->format = "llama2c";
  auto& c = m->cfg;
  c.arch = "llama";
  c.dim = h[0];
  c.ffn_dim = h[1];
  c.n_layers = h[2];
  c.n_heads = h[3];
  c.n_kv_heads = h[4];
  c.tied_embeddings = h[5] > 0;
  c.n_vocab = h[5] < 0 ? -int64_t(h[5]) : h[5];
  c.ctx_len = h[6];
  c.head_dim = c.n_heads > 0 ? c.dim / c.n_heads : 0;
  c.rope_dim = c.head_dim;
  c.rms_eps = 1e-5f;
  c.rope_theta = 10000.0f;
  c.rope_layout = RopeLayout::Interleaved;
  c.validate(path + " (llama2.c header)");
  if (c.head_dim * c.n_heads != c.dim) fail("{}: dim {} is not a multiple of n_heads {}", path, c.dim, c.n_heads);

  const int64_t L = c.n_layers, D = c.dim, KV = c.kv_dim(), F = c.ffn_dim, V = c.n_vocab;
  const int64_t hs = c.head_dim;
  uint64_t off = 28;
  // One tensor, or (per_layer) one per layer named blk.N.<name>.
  auto take = [&](std::string name, std::vector<int64_t> shape, bool per_layer) {
    const int64_t count = per_layer ? L : 1;
    Tensor t;
    t.name = std::move(name);
    t.shape = std::move(shape);
    t.nbytes = uint64_t(t.numel()) * 4;
    uint64_t total = checked_mul(uint64_t(count), t.nbytes, "llama2.c tensor");
    if (checked_add(off, total, "llama2.c offset") > f->size())
      fail("{}: truncated llama2.c checkpoint: {} needs bytes up to {}, file has {}", path, t.name, off + total, f->size());
    for (int64_t i = 0; i < count; i++) {
      Tensor ti = t;
      if (per_layer) ti.name = fmt::format("blk.{}.{}", i, t.name);
      ti.data = f->data() + off + uint64_t(i) * t.nbytes;
      ti.owner = f;
      m->tensors.push_back(std::move(ti));
    }
    off += total;
  };
  take("token_embd.weight", {V, D}, false);
  take("attn_norm.weight", {D}, true);
  take("attn_q.weight", {D, D}, true);
  take("attn_k.weight", {KV, D}, true);
  take("attn_v.weight", {KV, D}, true);
  take("attn_output.weight", {D, D}, true);
  take("ffn_norm.weight", {D}, true);
  take("ffn_gate.weight", {F, D}, true);
  take("ffn_down.weight", {D, F}, true);
  take("ffn_up.weight", {F, D}, true);
  take("output_norm.weight", {D}, false);
  off = checked_add(off, checked_mul(uint64_t(c.ctx_len), uint64_t(hs) * 4, "freq_cis"), "freq_cis");  // freq_cis_real+imag
  if (!c.tied_embeddings) take("output.weight", {V, D}, false);
  if (off != f->size())
    fail("{}: llama2.c checkpoint size mismatch: header implies {} bytes, file has {}", path, off, f->size());

  std::string tok = tokenizer_path;
  if (tok.empty()) {
    std::string dir = path.find('/') == std::string::npos ? "." : path.substr(0, path.find_last_of('/'));
    for (std::string cand : {dir + "/tok" + std::to_string(V) + ".bin", dir + "/tokenizer.bin"})
      if (file_exists(cand)) {
        tok = cand;
        break;
      }
    if (tok.empty()) fail("{}: no tokenizer found beside it (tok{}.bin or tokenizer.bin); pass --tokenizer", path, V);
  }
  m->tokenizer = Tokenizer::create(vocab_from_llama2c(tok, V), tok);
  c.bos_id = 1;
  c.eos_id = 2;
  m->bind();
  return m;
}

}  // namespace lmpress
