// Dynamic depth for decoding: a confidence-based early exit (CALM, Schuster
// et al., 2022) at one exit point. A decoding step runs blocks 0..K; if it is
// confident there, its logits are block K's hidden state through the final
// norm and the head, and the blocks after K are not run for that token. Later
// tokens still attend to it in those blocks: their K/V rows at its position
// are computed from the exited hidden state (CALM's state propagation: each
// skipped block's K/V projections of its own attention-normed input, which is
// block K's output), so the cache stays complete. Prompt tokens always run
// the whole model.
//
// Confidence measures:
//  softmax  the top-1 minus the top-2 probability of the exit logits (CALM's
//           softmax response); costs a head evaluation at every step that
//           does not exit.
//  state    the cosine similarity of the hidden state after block K and
//           after block K − 1 (the embedding for K = 0): CALM's
//           hidden-state saturation; the head runs only where the token exits.
#pragma once
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "model/config.h"

namespace lmpress {

enum class ExitMeasure { Softmax, State };

struct EarlyExit {
  int64_t layer = -1;     // the exit point: after this block (0-based); -1: off
  double threshold = 1;   // exit when the confidence is at least this
  ExitMeasure measure = ExitMeasure::Softmax;
  bool active() const { return layer >= 0; }
};

// Decoding steps taken with early exit on, and how many exited.
struct EarlyExitStats {
  int64_t steps = 0, exited = 0;
  double rate() const { return steps ? double(exited) / double(steps) : 0; }
};

// "softmax" or "state"; fails on anything else.
ExitMeasure parse_exit_measure(const std::string& s);
const char* exit_measure_name(ExitMeasure m);
// Fails unless the exit point is a block with blocks after it and the
// threshold is in (0, 1].
void check_early_exit(const EarlyExit& e, const ModelConfig& c);
// `--early-exit THRESHOLD --exit-layer LAYER --exit-measure MEASURE` for a
// model of config c: off when threshold < 0; layer -1 is block n_layers/2 - 1.
EarlyExit make_early_exit(double threshold, int64_t layer, const std::string& measure, const ModelConfig& c);
// Its statistics: a report's "early_exit" object, and that object as one line of text.
nlohmann::ordered_json early_exit_json(const EarlyExit& e, const EarlyExitStats& s);
std::string early_exit_summary(const nlohmann::ordered_json& j);

// The top-1 minus the top-2 probability of softmax(logits[n]), n >= 2.
double softmax_margin(const float* logits, int64_t n);
// Cosine similarity of a[n] and b[n] (0 when either is zero).
double cosine_similarity(const float* a, const float* b, int64_t n);

}  // namespace lmpress
