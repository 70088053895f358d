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

struct Header {
  int64_t n_vocab, n_ctx, n_chunks, top_k, first, bos;  // bos: put in front of each window, -1: none
  uint64_t vocab_hash;
  int64_t scored_per_chunk() const { return n_ctx - 1 - first; }
  uint64_t record_bytes() const { return 8 + 8 * uint64_t(top_k); }
};

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

void save_kld_base(const Model& base, const std::vector<int32_t>& tokens, const PerplexityOptions& opt,
                   int64_t top_k, const std::string& path) {
  const KldWindows w = plan_kld_windows(base, tokens, opt);
  const int64_t V = base.cfg.n_vocab;
  if (top_k < 1) fail("kld: --top-k must be at least 1");
  const int64_t k = std::min(top_k, V);
  AtomicFile f(path);
  f.write(kMagic, 8);
  const int64_t head[6] = {V, w.n_ctx, w.n_chunks, k, w.first, w.add_bos ? w.bos : -1};
  f.write(head, sizeof(head));
  const uint64_t hash = vocab_hash(base);
  f.write(&hash, 8);
  f.write(tokens.data(), size_t(w.n_chunks * w.n_ctx) * sizeof(int32_t));

  InferenceState st(base, w.n_ctx, opt.n_batch, opt.base_kv);
  std::vector<float> logits(size_t(w.n_ctx * V));
  std::vector<int32_t> window, order(static_cast<size_t>(V)), ids(static_cast<size_t>(k));
  std::vector<float> vals(static_cast<size_t>(k));
  Progress progress("kld base", uint64_t(w.n_chunks));
  for (int64_t c = 0; c < w.n_chunks; c++) {
    w.fill(tokens, c, window);
    st.reset();
    st.eval(window.data(), w.n_ctx, logits.data(), true);
    check_finite_logits(base, logits.data() + w.first * V, w.n_ctx - 1 - w.first, V, c, w.first);
    for (int64_t j = w.first; j < w.n_ctx - 1; j++) {
      const float* l = logits.data() + j * V;
      // Descending logits, lower id first among equals (the argmax rule of the full computation).
      std::iota(order.begin(), order.end(), 0);
      std::partial_sort(order.begin(), order.begin() + k, order.end(),
                        [l](int32_t a, int32_t b) { return l[a] > l[b] || (l[a] == l[b] && a < b); });
      double sum = 0;
      const double mx = l[order[0]];
      for (int64_t i = 0; i < V; i++) sum += std::exp(double(l[i]) - mx);
      const float rec[2] = {float(std::log(sum) + mx), l[tokens[size_t(c * w.n_ctx + j + 1)]]};
      for (int64_t i = 0; i < k; i++) ids[size_t(i)] = order[size_t(i)], vals[size_t(i)] = l[order[size_t(i)]];
      f.write(rec, sizeof(rec));
      f.write(ids.data(), ids.size() * sizeof(int32_t));
      f.write(vals.data(), vals.size() * sizeof(float));
    }
    progress.update(uint64_t(c + 1));
  }
  progress.finish();
  f.commit();
}

KldResult kl_divergence_saved(const std::string& path, const Model& cand, int64_t n_batch, const KvCacheSpec& kv,
                              const KvPolicy& policy, const EarlyExit& early_exit) {
  auto file = MappedFile::open(path);
  const uint8_t* d = file->data();
  const size_t size = file->size();
  if (size < kHeaderBytes || std::memcmp(d, kMagic, 8) != 0)
    fail("{}: not a saved kld base (no LMPKLDB1 header)", path);
  Header h;
  std::memcpy(&h, d + 8, sizeof(Header));
  if (h.n_vocab < 1 || h.n_vocab > (int64_t(1) << 24) || h.n_ctx < 4 || h.n_ctx > (int64_t(1) << 24) ||
      h.n_chunks < 1 || h.n_chunks > (int64_t(1) << 24) || h.top_k < 1 || h.top_k > h.n_vocab || h.first < 0 ||
      h.first > h.n_ctx - 2 || h.bos < -1 || h.bos >= h.n_vocab)
    fail("{}: corrupt kld base header (vocab {}, ctx {}, chunks {}, top-k {}, first {})", path, h.n_vocab, h.n_ctx,
         h.n_chunks, h.top_k, h.first);
  const uint64_t n_tok = uint64_t(h.n_chunks) * uint64_t(h.n_ctx);
  const long double expect = (long double)kHeaderBytes + 4.0L * n_tok +
                             (long double)h.n_chunks * h.scored_per_chunk() * h.record_bytes();
  if (expect != (long double)size)
    fail("{}: truncated or corrupt kld base ({} bytes, the header describes {:.0f})", path, size, double(expect));
  if (cand.cfg.n_vocab != h.n_vocab)
    fail("kld: the vocabularies differ ({} tokens in {}, {} in {})", h.n_vocab, path, cand.cfg.n_vocab, cand.path);
  if (h.vocab_hash != 0 && cand.tokenizer && vocab_hash(cand) != h.vocab_hash)
    fail("kld: {} has a different vocabulary from the base saved in {} (same size, different tokens)", cand.path,
         path);
  std::vector<int32_t> tokens(static_cast<size_t>(n_tok));
  std::memcpy(tokens.data(), d + kHeaderBytes, n_tok * sizeof(int32_t));
  for (int32_t t : tokens)
    if (t < 0 || t >= h.n_vocab) fail("{}: corrupt kld base (token id {} outside the vocabulary)", path, t);
  const uint8_t* rec = d + kHeaderBytes + n_tok * sizeof(int32_t);

  KldWindows w;
  w.n_ctx = h.n_ctx, w.n_chunks = h.n_chunks, w.first = h.first;
  w.add_bos = h.bos >= 0;
  w.bos = int32_t(h.bos);
  const int64_t V = h.n_vocab, k = h.top_k;
  InferenceState sq(cand, w.n_ctx, n_batch, kv, policy);
  sq.set_early_exit(early_exit);
  std::vector<float> lq(static_cast<size_t>(w.n_ctx * V)), vals(static_cast<size_t>(k));
  std::vector<int32_t> window, ids(static_cast<size_t>(k));
  KldSums sums;
  Progress progress("kld", uint64_t(w.n_chunks));
  for (int64_t c = 0; c < w.n_chunks; c++) {
    w.fill(tokens, c, window);
    eval_window(sq, window.data(), w.n_ctx, w.first, lq.data());
    check_finite_logits(cand, lq.data() + w.first * V, w.n_ctx - 1 - w.first, V, c, w.first);
    for (int64_t j = w.first; j < w.n_ctx - 1; j++, rec += h.record_bytes()) {
      float lse_next[2];
      std::memcpy(lse_next, rec, 8);
      std::memcpy(ids.data(), rec + 8, size_t(k) * 4);
      std::memcpy(vals.data(), rec + 8 + 4 * k, size_t(k) * 4);
      for (int32_t id : ids)
        if (id < 0 || id >= V) fail("{}: corrupt kld base (token id {} outside the vocabulary)", path, id);
      sums.add_topk(ids.data(), vals.data(), k, lse_next[0], lse_next[1], lq.data() + j * V, V,
                    tokens[size_t(c * w.n_ctx + j + 1)]);
    }
    progress.update(uint64_t(c + 1));
  }
  progress.finish();
  KldResult r = summarize_kld(std::move(sums));
  r.n_chunks = w.n_chunks;
  r.early_exit = sq.early_exit_stats();
  return r;
}

}  // namespace lmpress
