#include "model/kv_policy.h"

#include <algorithm>
#include <numeric>

#include "core/error.h"

namespace lmpress {
namespace {

// "a,b" (or "a" when `optional_second`, b then -1) as two counts; throws naming the policy.
void parse_counts(const std::string& text, const std::string& args, bool optional_second, int64_t& a, int64_t& b) {
  const auto count = [&](const std::string& s) {
    if (s.empty() || s.size() > 9 || s.find_first_not_of("0123456789") != std::string::npos)
      fail("--kv-policy {}: '{}' is not a count", text, s);
    return int64_t(std::stoll(s));
  };
  const size_t comma = args.find(',');
  if (args.empty()) fail("--kv-policy {}: expected {} after the colon", text, optional_second ? "a count" : "two counts separated by a comma");
  if (comma == std::string::npos) {
    if (!optional_second) fail("--kv-policy {}: expected two counts separated by a comma", text);
    a = count(args);
    b = -1;
    return;
  }
  a = count(args.substr(0, comma));
  b = count(args.substr(comma + 1));
}

}  // namespace

int64_t KvPolicy::step() const {
  if (kind == KvPolicyKind::SinkWindow) return std::max<int64_t>(1, window / 4);
  if (kind == KvPolicyKind::H2O) return std::max<int64_t>(1, std::min(window, budget - window) / 4);
  return 0;
}

KvPolicy parse_kv_policy(const std::string& text) {
  KvPolicy p;
  if (text.empty() || text == "none") return p;
  const size_t colon = text.find(':');
  const std::string name = text.substr(0, colon), args = colon == std::string::npos ? "" : text.substr(colon + 1);
  if (name == "sink-window") {
    p.kind = KvPolicyKind::SinkWindow;
    parse_counts(text, args, false, p.sinks, p.window);
    if (p.window < 1) fail("--kv-policy {}: the window must hold at least one position", text);
  } else if (name == "h2o") {
    p.kind = KvPolicyKind::H2O;
    parse_counts(text, args, true, p.budget, p.window);
    if (p.window < 0) p.window = p.budget / 2;
    if (p.window < 1 || p.window >= p.budget)
      fail("--kv-policy {}: the recent window must be at least 1 and below the budget {}", text, p.budget);
  } else if (name == "snapkv") {
    p.kind = KvPolicyKind::SnapKV;
    parse_counts(text, args, false, p.budget, p.window);
    if (p.window < 1 || p.window >= p.budget)
      fail("--kv-policy {}: the observation window must be at least 1 and below the budget {}", text, p.budget);
  } else {
    fail("--kv-policy '{}': expected none, sink-window:S,W, h2o:B[,W] or snapkv:B,W", text);
  }
  return p;
}

std::string kv_policy_name(const KvPolicy& p) {
  switch (p.kind) {
    case KvPolicyKind::None: return "none";
    case KvPolicyKind::SinkWindow: return "sink-window:" + std::to_string(p.sinks) + "," + std::to_string(p.window);
    case KvPolicyKind::H2O: return "h2o:" + std::to_string(p.budget) + "," + std::to_string(p.window);
    case KvPolicyKind::SnapKV: return "snapkv:" + std::to_string(p.budget) + "," + std::to_string(p.window);
  }
  return "?";
}

void check_policy_fits_model(const KvPolicy& p, const ModelConfig& c) {
  if (!p.active()) return;
  if (c.sliding_window > 0)
    fail("--kv-policy {}: the model attends through a sliding window of {} positions already ({}), which eviction "
         "would misplace; run it without a policy",
         kv_policy_name(p), c.sliding_window, c.field("sliding_window"));
  if (c.attn_sinks)
    fail("--kv-policy {}: the model's attention has sinks (gpt-oss), which the policies do not rank", kv_policy_name(p));
  if (c.attn_softcap > 0)
    fail("--kv-policy {}: the model soft-caps its attention scores ({}), which the policies do not rank",
         kv_policy_name(p), c.field("attn_logit_softcapping"));
}

void check_kv_policy(const KvPolicy& p, const KvCacheSpec& kv, int64_t n_ctx, int64_t n_batch) {
  if (!p.active()) return;
  const std::string name = kv_policy_name(p);
  if (kv.kivi())
    fail("--kv-policy {} with --cache-type {}: a KIVI key group spans {} positions, which eviction would split; use a "
         "row type (f16, q8_0, q4_0, ...)",
         name, kv_type_name(kv.k), kv.group);
  if (p.capacity() > n_ctx)
    fail("--kv-policy {}: it keeps up to {} positions, more than the context of {}", name, p.capacity(), n_ctx);
  if (p.kind == KvPolicyKind::SnapKV && p.window > n_batch)
    fail("--kv-policy {}: the observation window of {} is larger than the batch of {} tokens", name, p.window, n_batch);
}

int64_t sink_window_start(const KvPolicy& p, int64_t a, int64_t n, int64_t b) {
  if (n < p.sinks || p.sinks + (n - a) + b <= p.capacity()) return a;
  for (int64_t next = (a / p.block + 1) * p.block; n + b - next >= p.window; next += p.block) a = next;
  return a;
}

void keep_sink_window(int64_t n, int64_t sinks, int64_t keep, std::vector<int64_t>& out) {
  out.clear();
  if (keep >= n) {
    for (int64_t i = 0; i < n; i++) out.push_back(i);
    return;
  }
  for (int64_t i = 0; i < std::min(sinks, keep); i++) out.push_back(i);
  for (int64_t i = n - (keep - int64_t(out.size())); i < n; i++) out.push_back(i);
}

void keep_heavy(const float* score, int64_t n, int64_t recent, int64_t keep, std::vector<int64_t>& out) {
  out.clear();
  if (keep >= n) {
    for (int64_t i = 0; i < n; i++) out.push_back(i);
    return;
  }
  recent = std::min(recent, keep);
  const int64_t older = n - recent, heavy = keep - recent;
  out.resize(size_t(older));
  std::iota(out.begin(), out.end(), int64_t(0));
  // Largest score first, the older slot first among equals; then back in slot order.
  std::partial_sort(out.begin(), out.begin() + heavy, out.end(),
                    [&](int64_t a, int64_t b) { return score[a] > score[b] || (score[a] == score[b] && a < b); });
  out.resize(size_t(heavy));
  std::sort(out.begin(), out.end());
  for (int64_t i = older; i < n; i++) out.push_back(i);
}

void keep_snapkv(const float* score, int64_t n, int64_t window, int64_t keep, std::vector<int64_t>& out) {
  const int64_t prefix = n - std::min(window, n);
  constexpr int64_t kPool = 5;
  std::vector<float> pooled(size_t(n), 0.0f);
  for (int64_t i = 0; i < prefix; i++) {
    float s = 0;
    for (int64_t j = std::max<int64_t>(0, i - kPool / 2); j <= std::min(prefix - 1, i + kPool / 2); j++) s += score[j];
    pooled[size_t(i)] = s / float(kPool);
  }
  keep_heavy(pooled.data(), n, n - prefix, keep, out);
}

}  // namespace lmpress
