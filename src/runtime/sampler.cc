#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <unordered_map>

namespace lmpress {

int32_t argmax(const float* x, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; i++)
    if (x[i] > x[best]) best = i;
  return int32_t(best);
}

Sampler::Sampler(SamplerOptions o) : o_(o), rng_(o.seed) {}

namespace {
// Most likely first; ties: the lower id first.
bool more_likely(const std::pair<float, int32_t>& a, const std::pair<float, int32_t>& b) {
  return a.first > b.first || (a.first == b.first && a.second < b.second);
}
}  // namespace

// Leaves the candidates that pass the filters in cand_ and returns them,
// sorted only as far as a filter needed: with no filter (OpenAI's default,
// temperature only) nothing is sorted, so a token costs O(vocabulary), not a
// sort of it. top-p and min-p sort a growing prefix, since the tokens they keep
// are usually few.
size_t Sampler::filter(const float* logits, int64_t n, bool sorted_out) {
  cand_.resize(size_t(n));
  for (int64_t i = 0; i < n; i++) cand_[size_t(i)] = {logits[i], int32_t(i)};
  if (o_.top_k > 0 && o_.top_k < n) {
    std::nth_element(cand_.begin(), cand_.begin() + o_.top_k, cand_.end(), more_likely);
    cand_.resize(size_t(o_.top_k));
  }
  size_t sorted = 0;
  auto sort_to = [&](size_t k) {
    k = std::min(k, cand_.size());
    if (k <= sorted) return;
    k = std::max(k, std::min(cand_.size(), 2 * sorted + 64));  // doubling: O(n) partial sorts overall
    std::partial_sort(cand_.begin() + long(sorted), cand_.begin() + long(k), cand_.end(), more_likely);
    sorted = k;
  };
  size_t keep = cand_.size();
  if (o_.top_p < 1.0f || o_.min_p > 0.0f) {
    // Probabilities of the untempered distribution over the top-k candidates.
    sort_to(1);
    const float mx = cand_[0].first;
    double sum = 0;
    for (const auto& c : cand_) sum += std::exp(double(c.first - mx));
    if (o_.top_p < 1.0f) {
      double cum = 0;
      size_t k = 0;
      while (k < keep) {
        sort_to(k + 1);
        cum += std::exp(double(cand_[k++].first - mx)) / sum;
        if (cum >= o_.top_p) break;
      }
      keep = std::max<size_t>(k, 1);
    }
    if (o_.min_p > 0.0f) {
      const double p0 = 1.0 / sum;
      size_t k = 1;
      for (; k < keep; k++) {
        sort_to(k + 1);
        if (std::exp(double(cand_[k].first - mx)) / sum < o_.min_p * p0) break;
      }
      keep = k;
    }
  }
  if (sorted_out) sort_to(keep);
  cand_.resize(keep);
  return keep;
}

std::vector<int32_t> Sampler::candidates(const float* logits, int64_t n) {
  filter(logits, n, true);
  std::vector<int32_t> ids;
  for (auto& c : cand_) ids.push_back(c.second);
  return ids;
}

int32_t Sampler::sample(const float* logits, int64_t n) {
  if (o_.temperature <= 0.0f) return argmax(logits, n);
  filter(logits, n, false);
  float mx = cand_[0].first;
  for (const auto& c : cand_) mx = std::max(mx, c.first);
  probs_.resize(cand_.size());
  double sum = 0;
  for (size_t i = 0; i < cand_.size(); i++) sum += probs_[i] = std::exp(double(cand_[i].first - mx) / o_.temperature);
  double r = std::uniform_real_distribution<double>(0.0, sum)(rng_);
  for (size_t i = 0; i < cand_.size(); i++) {
    r -= probs_[i];
    if (r <= 0) return cand_[i].second;
  }
  return cand_.back().second;
}

void Sampler::distribution(const float* logits, int64_t n, Dist& out) {
  out.clear();
  if (greedy()) {
    out.emplace_back(argmax(logits, n), 1.0);
    return;
  }
  filter(logits, n, false);
  float mx = cand_[0].first;
  for (const auto& c : cand_) mx = std::max(mx, c.first);
  double sum = 0;
  for (const auto& c : cand_) {
    out.emplace_back(c.second, std::exp(double(c.first - mx) / o_.temperature));
    sum += out.back().second;
  }
  for (auto& p : out) p.second /= sum;
}

int32_t Sampler::draw(const Dist& d) {
  double sum = 0;
  for (const auto& p : d) sum += p.second;
  double r = std::uniform_real_distribution<double>(0.0, sum)(rng_);
  for (const auto& p : d) {
    r -= p.second;
    if (r <= 0 && p.second > 0) return p.first;
  }
  for (auto it = d.rbegin(); it != d.rend(); ++it)
    if (it->second > 0) return it->first;
  return d.front().first;
}

void apply_penalties(float* logits, int64_t n_vocab, const int32_t* history, int64_t n, const SamplerOptions& o) {
  if (!o.has_penalties()) return;
  const int64_t first = o.penalty_last_n < 0 ? 0 : std::max<int64_t>(0, n - o.penalty_last_n);
  std::unordered_map<int32_t, int> count;
  for (int64_t i = first; i < n; i++) count[history[i]]++;
  for (const auto& [id, c] : count) {
    if (id < 0 || id >= n_vocab) continue;
    float& l = logits[id];
    l = l > 0 ? l / o.repeat_penalty : l * o.repeat_penalty;
    l -= float(c) * o.frequency_penalty + o.presence_penalty;
  }
}

TokenLogprobs token_logprobs(const float* logits, int64_t n_vocab, int32_t id, int top) {
  const float mx = logits[argmax(logits, n_vocab)];
  double sum = 0;
  for (int64_t i = 0; i < n_vocab; i++) sum += std::exp(double(logits[i] - mx));
  const double lse = double(mx) + std::log(sum);
  TokenLogprobs r;
  r.logprob = float(double(logits[id]) - lse);
  if (top > 0) {
    std::vector<std::pair<float, int32_t>> c(static_cast<size_t>(n_vocab));
    for (int64_t i = 0; i < n_vocab; i++) c[size_t(i)] = {logits[i], int32_t(i)};
    const size_t k = std::min<size_t>(size_t(top), c.size());
    std::partial_sort(c.begin(), c.begin() + long(k), c.end(), more_likely);
    for (size_t i = 0; i < k; i++) r.top.emplace_back(c[i].second, float(double(c[i].first) - lse));
  }
  return r;
}

}  // namespace lmpress
