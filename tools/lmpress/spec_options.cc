// The speculative-decoding options and statistics shared by the commands that decode.
#include "commands.h"

namespace lmpress::cli {

void add_spec_options(CLI::App* cmd, SpecOptions& spec) {
  cmd->add_option("--spec", spec.type,
                  "Speculative decoding: ngram (prompt lookup), draft:MODEL, self:skip:LAYERS (e.g. 4,6-9), "
                  "self:exit:K, self:file:PATH");
  cmd->add_option("--draft-max", spec.draft_max, "Tokens drafted per verification pass")
      ->capture_default_str()->check(CLI::Range(int64_t(1), int64_t(1) << 20));
  cmd->add_option("--draft-min", spec.draft_min, "Drafts shorter than this are not verified")
      ->capture_default_str()->check(CLI::Range(int64_t(0), int64_t(1) << 20));
  cmd->add_option("--draft-p-min", spec.p_min, "A model draft stops at a token below this probability")
      ->capture_default_str()->check(CLI::Range(0.0, 1.0));
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

}  // namespace lmpress::cli
