#include "runtime/generate_report.h"

#include "kernels/kv_types.h"

namespace lmpress {

nlohmann::ordered_json generate_report_json(const GenerateStats& s, const GenerateOptions& g, const SpecOptions* spec) {
  nlohmann::ordered_json j{{"tokens", s.tokens},
                           {"n_prompt", s.n_prompt},
                           {"n_generated", s.n_generated},
                           {"stopped", stop_reason_name(s.stopped)},
                           {"prompt_tokens_per_s", s.prompt_tps()},
                           {"gen_tokens_per_s", s.gen_tps()},
                           {"kv_cache",
                            {{"type_k", kv_type_name(g.kv.k)},
                             {"type_v", kv_type_name(g.kv.v)},
                             {"name", kv_spec_name(g.kv)},
                             {"bytes_per_token", s.cache_bytes_per_token},
                             {"bytes", s.cache_bytes},
                             {"policy", kv_policy_name(g.policy)}}}};
  if (spec && g.drafter) j["spec"] = spec_json(*spec, s.spec);
  if (g.early_exit.active()) j["early_exit"] = early_exit_json(g.early_exit, s.early_exit);
  return j;
}

}  // namespace lmpress
