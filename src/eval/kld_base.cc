#include "eval/kld_base.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/mapped_file.h"
#include "core/progress.h"
#include "model/forward.h"

namespace lmpress {

namespace {

constexpr char kMagic[8] = {'L', 'M', 'P', 'K', 'L', 'D', 'B', '1'};
constexpr size_t kHeaderBytes = 8 + 7 * 8;

}  // namespace

uint64_t vocab_hash(const Model& m) {
  if (!m.tokenizer) return 0;
  uint64_t h = 1469598103934665603ull;
  for (const auto& t : m.tokenizer->vocab().tokens) {
    for (unsigned char c : t) h = (h ^ c) * 1099511628211ull;
    h = (h ^ 0xffu) * 1099511628211ull;  // separator: "ab","c" differs from "a","bc"
  }
  return h;
}

SavedLogitsWriter::SavedLogitsWriter(const std::string& path, const SavedLogitsHeader& h, const int32_t* tokens)
    : h_(h), f_(path), order_(size_t(h.n_vocab)), ids_(size_t(h.top_k)), vals_(size_t(h.top_k)) {
  f_.write(kMagic, 8);
  const int64_t head[6] = {h.n_vocab, h.n_ctx, h.n_chunks, h.top_k, h.first, h.bos};
  f_.write(head, sizeof(head));
  f_.write(&h.vocab_hash, 8);
  f_.write(tokens, size_t(h.n_chunks * h.n_ctx) * sizeof(int32_t));
}

void SavedLogitsWriter::add_window(const float* logits, const int32_t* window) {
  const int64_t V = h_.n_vocab, k = h_.top_k;
  for (int64_t j = h_.first; j < h_.n_ctx - 1; j++) {
    const float* l = logits + j * V;
    // Descending logits, lower id first among equals (the argmax rule of the full computation).
    std::iota(order_.begin(), order_.end(), 0);
    std::partial_sort(order_.begin(), order_.begin() + k, order_.end(),
                      [l](int32_t a, int32_t b) { return l[a] > l[b] || (l[a] == l[b] && a < b); });
    double sum = 0;
    const double mx = l[order_[0]];
    for (int64_t i = 0; i < V; i++) sum += std::exp(double(l[i]) - mx);
    const float rec[2] = {float(std::log(sum) + mx), l[window[j + 1]]};
    for (int64_t i = 0; i < k; i++) ids_[size_t(i)] = order_[size_t(i)], vals_[size_t(i)] = l[order_[size_t(i)]];
    f_.write(rec, sizeof(rec));
    f_.write(ids_.data(), ids_.size() * sizeof(int32_t));
    f_.write(vals_.data(), vals_.size() * sizeof(float));
  }
}

void SavedLogitsWriter::commit() { f_.commit(); }

SavedLogits::SavedLogits(const std::string& path) : path_(path), file_(MappedFile::open(path)) {
  const uint8_t* d = file_->data();
  const size_t size = file_->size();
  if (size < kHeaderBytes || std::memcmp(d, kMagic, 8) != 0)
    fail("{}: not a saved kld base (no LMPKLDB1 header)", path);
  int64_t head[6];
  std::memcpy(head, d + 8, sizeof(head));
  h_.n_vocab = head[0], h_.n_ctx = head[1], h_.n_chunks = head[2], h_.top_k = head[3], h_.first = head[4],
  h_.bos = head[5];
  std::memcpy(&h_.vocab_hash, d + 8 + sizeof(head), 8);
  const SavedLogitsHeader& h = h_;
  if (h.n_vocab < 1 || h.n_vocab > (int64_t(1) << 24) || h.n_ctx < 2 || h.n_ctx > (int64_t(1) << 24) ||
      h.n_chunks < 1 || h.n_chunks > (int64_t(1) << 24) || h.top_k < 1 || h.top_k > h.n_vocab || h.first < 0 ||
      h.first > h.n_ctx - 2 || h.bos < -1 || h.bos >= h.n_vocab)
    fail("{}: corrupt kld base header (vocab {}, ctx {}, chunks {}, top-k {}, first {})", path, h.n_vocab, h.n_ctx,
         h.n_chunks, h.top_k, h.first);
  const uint64_t n_tok = uint64_t(h.n_chunks) * uint64_t(h.n_ctx);
  const long double expect = (long double)kHeaderBytes + 4.0L * n_tok +
                             (long double)h.n_chunks * h.scored_per_chunk() * h.record_bytes();
  if (expect != (long double)size)
    fail("{}: truncated or corrupt kld base ({} bytes, the header describes {:.0f})", path, size, double(expect));
  // The mapping is page-aligned and every field 4-byte aligned.
  tokens_ = reinterpret_cast<const int32_t*>(d + kHeaderBytes);
  records_ = d + kHeaderBytes + n_tok * sizeof(int32_t);
  for (uint64_t i = 0; i < n_tok; i++)
    if (tokens_[i] < 0 || tokens_[i] >= h.n_vocab)
      fail("{}: corrupt kld base (token id {} outside the vocabulary)", path, tokens_[i]);
  // Each row: finite values, k distinct ids, logits descending and none above the log-sum-exp.
  std::vector<uint32_t> seen(size_t(h.n_vocab), 0);
  uint32_t mark = 0;
  for (int64_t c = 0; c < h.n_chunks; c++)
    for (int64_t j = h.first; j < h.n_ctx - 1; j++) {
      const Row r = row(c, j);
      mark++;
      if (!std::isfinite(r.lse) || !std::isfinite(r.next_logit) || r.next_logit > r.lse + 1e-3f)
        fail("{}: corrupt kld base (log-sum-exp {}, next token's logit {} in window {})", path, r.lse, r.next_logit, c);
      double mass = 0;
      for (int64_t i = 0; i < h.top_k; i++) {
        const int32_t id = r.ids[i];
        if (id < 0 || id >= h.n_vocab || !std::isfinite(r.logits[i]) || seen[size_t(id)] == mark ||
            r.logits[i] > r.lse + 1e-3f || (i > 0 && r.logits[i] > r.logits[i - 1]))
          fail("{}: corrupt kld base (token id {}, logit {} at rank {} in window {})", path, id, r.logits[i], i, c);
        seen[size_t(id)] = mark;
        mass += std::exp(double(r.logits[i]) - double(r.lse));
      }
      if (mass > 1.001)
        fail("{}: corrupt kld base (the top {} hold probability {:.4f} > 1 in window {})", path, h.top_k, mass, c);
    }
  // FNV-1a over the file's 32-bit words.
  hash_ = 1469598103934665603ull;
  for (size_t i = 0; i + 4 <= size; i += 4) {
    uint32_t v;
    std::memcpy(&v, d + i, 4);
    hash_ = (hash_ ^ v) * 1099511628211ull;
  }
}

void SavedLogits::window(int64_t c, std::vector<int32_t>& out) const {
  out.assign(tokens_ + c * h_.n_ctx, tokens_ + (c + 1) * h_.n_ctx);
  if (h_.bos >= 0) out[0] = int32_t(h_.bos);
}

SavedLogits::Row SavedLogits::row(int64_t c, int64_t j) const {
  const uint8_t* r = records_ + (uint64_t(c) * uint64_t(h_.scored_per_chunk()) + uint64_t(j - h_.first)) * h_.record_bytes();
  const auto* f = reinterpret_cast<const float*>(r);
  return {f[0], f[1], reinterpret_cast<const int32_t*>(r + 8), reinterpret_cast<const float*>(r + 8 + 4 * h_.top_k)};
}

void SavedLogits::check_vocab(const Model& m, const std::string& who) const {
  if (m.cfg.n_vocab != h_.n_vocab)
    fail("{}: the vocabularies differ ({} tokens in {}, {} in {})", who, h_.n_vocab, path_, m.cfg.n_vocab, m.path);
  if (h_.vocab_hash != 0 && m.tokenizer && vocab_hash(m) != h_.vocab_hash)
    fail("{}: {} has a different vocabulary from the base saved in {} (same size, different tokens)", who, m.path,
         path_);
}

void save_kld_base(const Model& base, const std::vector<int32_t>& tokens, const PerplexityOptions& opt,
                   int64_t top_k, const std::string& path) {
  const KldWindows w = plan_kld_windows(base, tokens, opt);
  const int64_t V = base.cfg.n_vocab;
  if (top_k < 1) fail("kld: --top-k must be at least 1");
  SavedLogitsHeader h;
  h.n_vocab = V, h.n_ctx = w.n_ctx, h.n_chunks = w.n_chunks, h.top_k = std::min(top_k, V), h.first = w.first;
  h.bos = w.add_bos ? w.bos : -1;
  h.vocab_hash = vocab_hash(base);
  SavedLogitsWriter out(path, h, tokens.data());
  InferenceState st(base, w.n_ctx, opt.n_batch, opt.base_kv);
  std::vector<float> logits(size_t(w.n_ctx * V));
  std::vector<int32_t> window;
  Progress progress("kld base", uint64_t(w.n_chunks));
  for (int64_t c = 0; c < w.n_chunks; c++) {
    w.fill(tokens, c, window);
    st.reset();
    st.eval(window.data(), w.n_ctx, logits.data(), true);
    check_finite_logits(base, logits.data() + w.first * V, w.n_ctx - 1 - w.first, V, c, w.first);
    out.add_window(logits.data(), window.data());
    progress.update(uint64_t(c + 1));
  }
  progress.finish();
  out.commit();
}

KldResult kl_divergence_saved(const std::string& path, const Model& cand, int64_t n_batch, const KvCacheSpec& kv,
                              const KvPolicy& policy, const EarlyExit& early_exit) {
  const SavedLogits saved(path);
  const SavedLogitsHeader& h = saved.header();
  if (h.n_ctx < 4) fail("{}: a window of {} tokens is too small for kld (at least 4)", path, h.n_ctx);
  saved.check_vocab(cand, "kld");
  const int64_t V = h.n_vocab, k = h.top_k;
  InferenceState sq(cand, h.n_ctx, n_batch, kv, policy);
  sq.set_early_exit(early_exit);
  std::vector<float> lq(static_cast<size_t>(h.n_ctx * V));
  std::vector<int32_t> window;
  KldSums sums;
  Progress progress("kld", uint64_t(h.n_chunks));
  for (int64_t c = 0; c < h.n_chunks; c++) {
    saved.window(c, window);
    eval_window(sq, window.data(), h.n_ctx, h.first, lq.data());
    check_finite_logits(cand, lq.data() + h.first * V, h.n_ctx - 1 - h.first, V, c, h.first);
    for (int64_t j = h.first; j < h.n_ctx - 1; j++) {
      const SavedLogits::Row r = saved.row(c, j);
      sums.add_topk(r.ids, r.logits, k, r.lse, r.next_logit, lq.data() + j * V, V, window[size_t(j + 1)]);
    }
    progress.update(uint64_t(c + 1));
  }
  progress.finish();
  KldResult r = summarize_kld(std::move(sums));
  r.n_chunks = h.n_chunks;
  r.early_exit = sq.early_exit_stats();
  return r;
}

}  // namespace lmpress
