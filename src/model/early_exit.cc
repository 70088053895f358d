#include "model/early_exit.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace lmpress {

ExitMeasure parse_exit_measure(const std::string& s) {
  if (s == "softmax") return ExitMeasure::Softmax;
  if (s == "state") return ExitMeasure::State;
  fail("--exit-measure '{}': write softmax (top-1 minus top-2 probability) or state (hidden-state cosine)", s);
}

const char* exit_measure_name(ExitMeasure m) { return m == ExitMeasure::Softmax ? "softmax" : "state"; }

void check_early_exit(const EarlyExit& e, const ModelConfig& c) {
  if (!e.active()) return;
  if (e.layer > c.n_layers - 2)
    fail("--exit-layer {}: the exit block must be in [0, {}] (the model has {} blocks; after block {} it is whole)",
         e.layer, c.n_layers - 2, c.n_layers, c.n_layers - 1);
  if (!(e.threshold > 0 && e.threshold <= 1))
    fail("--early-exit {}: the confidence threshold must be in (0, 1]", e.threshold);
}

EarlyExit make_early_exit(double threshold, int64_t layer, const std::string& measure, const ModelConfig& c) {
  EarlyExit e;
  if (threshold < 0) {
    if (layer >= 0) fail("--exit-layer {} needs --early-exit THRESHOLD", layer);
    return e;
  }
  e.layer = layer >= 0 ? layer : std::max<int64_t>(0, c.n_layers / 2 - 1);
  e.threshold = threshold;
  e.measure = parse_exit_measure(measure.empty() ? "softmax" : measure);
  check_early_exit(e, c);
  return e;
}

nlohmann::ordered_json early_exit_json(const EarlyExit& e, const EarlyExitStats& s) {
  return {{"layer", e.layer},       {"threshold", e.threshold}, {"measure", exit_measure_name(e.measure)},
          {"steps", s.steps},       {"exited", s.exited},       {"exit_rate", s.rate()}};
}

std::string early_exit_summary(const nlohmann::ordered_json& j) {
  return fmt::format("early exit after block {} ({} >= {}): {} of {} decoded tokens exited ({:.1f}%)",
                     j.at("layer").get<int64_t>(), j.at("measure").get<std::string>(), j.at("threshold").get<double>(),
                     j.at("exited").get<int64_t>(), j.at("steps").get<int64_t>(), 100.0 * j.at("exit_rate").get<double>());
}

double softmax_margin(const float* logits, int64_t n) {
  float top1 = -INFINITY, top2 = -INFINITY;
  for (int64_t i = 0; i < n; i++) {
    const float v = logits[i];
    if (v > top1) {
      top2 = top1;
      top1 = v;
    } else if (v > top2) {
      top2 = v;
    }
  }
  double sum = 0;
  for (int64_t i = 0; i < n; i++) sum += std::exp(double(logits[i]) - double(top1));
  return (1.0 - std::exp(double(top2) - double(top1))) / sum;
}

double cosine_similarity(const float* a, const float* b, int64_t n) {
  double ab = 0, aa = 0, bb = 0;
  for (int64_t i = 0; i < n; i++) {
    ab += double(a[i]) * b[i];
    aa += double(a[i]) * a[i];
    bb += double(b[i]) * b[i];
  }
  return aa > 0 && bb > 0 ? ab / std::sqrt(aa * bb) : 0;
}

}  // namespace lmpress
