// The speculative-decoding options and statistics shared by the commands that decode.
#include "commands.h"

#include "core/error.h"
#include "eval/layer_skip.h"

namespace lmpress::cli {

void add_spec_options(CLI::App* cmd, SpecOptions& spec) {
  cmd->add_option("--spec", spec.type,
                  "Speculative decoding: ngram or ngram:MIN-MAX (prompt lookup), draft:MODEL, self:skip:LAYERS (e.g. 4,6-9), "
                  "self:exit:K, self:file:PATH");
  cmd->add_option("--draft-max", spec.draft_max, "Tokens drafted per verification pass")
      ->capture_default_str()->check(CLI::Range(int64_t(1), int64_t(1) << 20));
  cmd->add_option("--draft-min", spec.draft_min, "Drafts shorter than this are not verified")
      ->capture_default_str()->check(CLI::Range(int64_t(0), int64_t(1) << 20));
  cmd->add_option("--draft-p-min", spec.p_min, "A model draft stops at a token below this probability")
      ->capture_default_str()->check(CLI::Range(0.0, 1.0));
  add_path_option(cmd, "--spec-calib", spec.calib,
                  "Text on which --spec self:skip:auto:N ranks the blocks (its first window of up to 256 tokens)",
                  PathRole::Input);
}

std::string resolve_spec(SpecOptions& spec, const Model& m, int64_t n_ctx) {
  const std::string prefix = "self:skip:auto";
  if (spec.type.rfind(prefix, 0) != 0) return "";
  const int64_t n_skip = spec.type.size() > prefix.size() && spec.type[prefix.size()] == ':'
                             ? parse_block_number(spec.type.substr(prefix.size() + 1))
                             : -1;
  if (n_skip < 0) fail("--spec {}: write self:skip:auto:N, N the number of blocks to skip", spec.type);
  if (spec.calib.empty()) fail("--spec {} needs --spec-calib TEXT to rank the blocks on", spec.type);
  const int64_t L = m.cfg.n_layers;
  if (n_skip < 1 || n_skip >= L)
    fail("--spec {}: {} blocks to skip: it must be in [1, {}] (the model has {} blocks)", spec.type, n_skip, L - 1, L);
  if (!m.tokenizer) fail("--spec {}: the model has no tokenizer", spec.type);
  std::vector<int32_t> window = m.tokenizer->encode(read_input_text(spec.calib), true, false);
  window.resize(std::min<size_t>(window.size(), size_t(std::min<int64_t>(256, n_ctx))));
  if (window.size() < 16) fail("--spec-calib {}: {} tokens; at least 16 are needed", spec.calib, window.size());
  const std::vector<double> loss = block_skip_kld(m, window);
  const std::vector<int64_t> blocks = least_loss_blocks(loss, n_skip);
  std::string list, losses;
  for (int64_t b : blocks) list += (list.empty() ? "" : ",") + std::to_string(b);
  for (size_t l = 0; l < loss.size(); l++) losses += fmt::format("{}{}: {:.4f}", l ? ", " : "", l, loss[l]);
  const std::string was = spec.type;
  spec.type = "self:skip:" + list;
  return fmt::format("{}: skipping blocks {} (mean KLD of each block skipped alone over {} tokens of {}: {})", was,
                     list, window.size(), spec.calib, losses);
}

nlohmann::ordered_json spec_json(const SpecOptions& o, const SpecStats& s) {
  std::vector<double> by_position;
  for (size_t i = 0; i < s.drafted_at.size() && s.drafted_at[i] > 0; i++)
    by_position.push_back(double(s.accepted_at[i]) / double(s.drafted_at[i]));
  return {{"type", o.type},
          {"draft_max", o.draft_max},
          {"draft_min", o.draft_min},
          {"p_min", o.p_min},
          {"steps", s.steps},
          {"drafted", s.drafted},
          {"accepted", s.accepted},
          {"acceptance_rate", s.acceptance_rate()},
          {"acceptance_by_position", by_position},
          {"mean_accepted", s.mean_accepted()},
          {"draft_seconds", s.draft_seconds},
          {"verify_seconds", s.verify_seconds}};
}

std::string spec_summary(const SpecOptions& o, const SpecStats& s) {
  return fmt::format(
      "speculative ({}): {} passes, {} drafted, {} accepted ({:.1f}%), {:.2f} accepted per pass; draft {:.2f} s, "
      "verify {:.2f} s",
      o.type, s.steps, s.drafted, s.accepted, 100.0 * s.acceptance_rate(), s.mean_accepted(), s.draft_seconds,
      s.verify_seconds);
}

void add_early_exit_options(CLI::App* cmd, EarlyExitOptions& o) {
  cmd->add_option("--early-exit", o.threshold,
                  "Dynamic depth (CALM): a decoded token leaves after block --exit-layer when its confidence there is "
                  "at least this, in (0, 1]");
  cmd->add_option("--exit-layer", o.layer, "The early exit's block (default: n_layers / 2 - 1)");
  cmd->add_option("--exit-measure", o.measure,
                  "Early-exit confidence: softmax (top-1 minus top-2 probability) or state (cosine of the hidden "
                  "state before and after the exit block)")
      ->capture_default_str();
}

EarlyExit EarlyExitOptions::resolve(const ModelConfig& c) const {
  EarlyExit e;
  if (threshold < 0) {
    if (layer >= 0) fail("--exit-layer {} needs --early-exit THRESHOLD", layer);
    return e;
  }
  e.layer = layer >= 0 ? layer : std::max<int64_t>(0, c.n_layers / 2 - 1);
  e.threshold = threshold;
  e.measure = parse_exit_measure(measure);
  check_early_exit(e, c);
  return e;
}

nlohmann::ordered_json early_exit_json(const EarlyExit& e, const EarlyExitStats& s) {
  return {{"layer", e.layer},       {"threshold", e.threshold}, {"measure", exit_measure_name(e.measure)},
          {"steps", s.steps},       {"exited", s.exited},       {"exit_rate", s.rate()}};
}

std::string early_exit_summary(const EarlyExit& e, const EarlyExitStats& s) {
  return fmt::format("early exit after block {} ({} >= {}): {} of {} decoded tokens exited ({:.1f}%)", e.layer,
                     exit_measure_name(e.measure), e.threshold, s.exited, s.steps, 100.0 * s.rate());
}

}  // namespace lmpress::cli
