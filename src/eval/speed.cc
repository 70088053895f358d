#include "eval/speed.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <optional>
#include <random>

#include "core/error.h"
#include "model/cost.h"
#include "model/forward.h"

namespace lmpress {

double mean_of(const std::vector<double>& v) {
  return v.empty() ? 0.0 : std::accumulate(v.begin(), v.end(), 0.0) / double(v.size());
}

double stddev_of(const std::vector<double>& v) {
  if (v.size() < 2) return 0.0;
  const double mean = mean_of(v);
  double s = 0;
  for (double x : v) s += (x - mean) * (x - mean);
  return std::sqrt(s / double(v.size() - 1));
}

double SpeedTest::avg_ns() const { return mean_of(samples_ns); }

double SpeedTest::stddev_ns() const { return stddev_of(samples_ns); }

std::vector<double> SpeedTest::samples_ts() const {
  std::vector<double> ts;
  for (double ns : samples_ns) ts.push_back(tokens() * 1e9 / ns);
  return ts;
}

double SpeedTest::avg_ts() const { return mean_of(samples_ts()); }

double SpeedTest::stddev_ts() const { return stddev_of(samples_ts()); }

std::string SpeedTest::name() const {
  const std::string base = n_prompt > 0 ? "pp" + std::to_string(n_prompt) : "tg" + std::to_string(n_gen);
  return n_depth > 0 ? base + " @ d" + std::to_string(n_depth) : base;
}

std::vector<SpeedTest> run_speed_tests(const Model& m, const SpeedOptions& o) {
  if (o.reps < 1) fail("bench: repetitions must be at least 1");
  std::vector<SpeedTest> tests;
  for (int64_t d : o.n_depth) {
    if (d < 0) fail("bench: depth {} is negative", d);
    for (int64_t p : o.n_prompt)
      if (p > 0) tests.push_back({p, 0, d, {}, {}});
    for (int64_t g : o.n_gen)
      if (g > 0) tests.push_back({0, g, d, {}, {}});
  }
  if (tests.empty()) fail("bench: no test (give -p and/or -n greater than 0)");
  std::mt19937 rng(o.seed);
  const int32_t vocab = int32_t(m.cfg.n_vocab);
  for (auto& t : tests) {
    const int64_t n = t.n_depth + t.n_prompt + t.n_gen;
    const int64_t batch = std::min<int64_t>(o.n_batch, std::max<int64_t>(1, t.n_depth + t.n_prompt));
    InferenceState st(m, n, batch, o.kv);
    std::vector<int32_t> tokens(static_cast<size_t>(n));
    // The last token's logits of every eval, as llama-bench's decode computes
    // them (its batches ask for the last token's output): the output matrix is
    // part of what each generated token costs.
    std::vector<float>& logits = t.last_logits;
    logits.assign(static_cast<size_t>(vocab), 0.0f);
    // The depth is filled once (untimed) and each repetition goes back to it,
    // as llama-bench does.
    std::optional<InferenceState::Mark> depth;
    auto run = [&] {
      for (auto& tok : tokens) tok = int32_t(rng() % uint32_t(vocab));
      if (m.cfg.bos_id >= 0) tokens[0] = m.cfg.bos_id;
      if (!depth) {
        st.reset();
        for (int64_t i = 0; i < t.n_depth; i += batch)
          st.eval(tokens.data() + i, std::min(batch, t.n_depth - i), nullptr, false);
        depth = st.mark();
      }
      st.rewind(*depth);
      const int32_t* timed = tokens.data() + t.n_depth;
      const auto start = std::chrono::steady_clock::now();
      if (t.n_prompt > 0) {
        for (int64_t i = 0; i < t.n_prompt; i += o.n_batch)
          st.eval(timed + i, std::min(o.n_batch, t.n_prompt - i), logits.data(), false);
      } else {
        for (int64_t i = 0; i < t.n_gen; i++) st.eval(timed + i, 1, logits.data(), false);
      }
      return double(std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start).count());
    };
    run();  // warm-up: page in the weights, settle the threads
    for (int r = 0; r < o.reps; r++) t.samples_ns.push_back(run());
  }
  return tests;
}

Bandwidth measure_triad_bandwidth(uint64_t array_bytes, int reps) {
  const size_t n = size_t(array_bytes / sizeof(float));
  std::vector<float> a(n), b(n), c(n);
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; i++) {  // first touch by the threads that will use the pages
    a[i] = 0.0f;
    b[i] = 1.0f;
    c[i] = 2.0f;
  }
  double best = INFINITY;
  const float s = 3.0f;
  for (int r = 0; r < reps; r++) {
    const auto start = std::chrono::steady_clock::now();
    float* pa = a.data();
    const float* pb = b.data();
    const float* pc = c.data();
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) pa[i] = pb[i] + s * pc[i];
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  if (a[n / 2] != 7.0f) fail("bandwidth: triad gave a wrong result");
  return {3.0 * double(n * sizeof(float)) / best, uint64_t(n * sizeof(float))};
}

uint64_t bytes_per_token(const Model& m) { return uint64_t(token_cost(m, 1, {}).weight_bytes); }

}  // namespace lmpress
