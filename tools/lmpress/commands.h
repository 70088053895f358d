// Each subcommand registers itself on the app; main() only dispatches.
#pragma once
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <nlohmann/json.hpp>

#include "compress/calibration.h"
#include "compress/compensate.h"
#include "api_use.h"
#include "core/mapped_file.h"
#include "guarded.h"
#include "model/kv_policy.h"
#include "model/model.h"
#include "runtime/speculative.h"

namespace lmpress::cli {

void add_info(CLI::App& app);
void add_tokenize(CLI::App& app);
void add_chat_template(CLI::App& app);
void add_generate(CLI::App& app);
void add_perplexity(CLI::App& app);
void add_convert(CLI::App& app);
void add_pull(CLI::App& app);
void add_quantize(CLI::App& app);
void add_imatrix(CLI::App& app);
void add_bench(CLI::App& app);
void add_bench_serve(CLI::App& app);
void add_make_model(CLI::App& app);
void add_kld(CLI::App& app);
void add_eval(CLI::App& app);
void add_prune(CLI::App& app);
void add_apply(CLI::App& app);
void add_smooth(CLI::App& app);
void add_rotate(CLI::App& app);
void add_lowrank(CLI::App& app);
void add_compare(CLI::App& app);
void add_serve(CLI::App& app);
void add_finetune(CLI::App& app);

// --calib, --calib-samples, --calib-ctx (quantize, prune); `who`: the methods that use them.
void add_calibration_options(CLI::App* cmd, CalibrationOptions& calib, const std::string& who);
void add_finite_check_flag(CLI::App* cmd, bool& skip);
// --lora FILE[:SCALE] (repeatable): LoRA adapters merged into the model at load (perplexity, generate, serve).
void add_lora_option(CLI::App* cmd, std::vector<std::string>& loras);
// --compensate rank=R[,method=eora|svd] and --compensate-out FILE (quantize,
// prune; compress/compensate.h); the adapter's path is declared to the path
// guard. out: the command's output path; peft: whether the output is an int-N
// checkpoint (read when the command runs).
void add_compensate_options(CLI::App* cmd, std::string& spec, std::string& adapter_out, const std::string& out,
                            std::function<bool()> peft);
// --threads, shared by the compute commands.
void add_threads_option(CLI::App* cmd, int& threads);
// --template / --chat-template: a built-in chat template's name or a Jinja
// file (declared to the path guard). `tmpl` must outlive the app.
void add_chat_template_option(CLI::App* cmd, const std::string& name, std::string& tmpl);
// The KV-cache options of the commands that run the model: --cache-type T
// (K and V), --cache-type-k, --cache-type-v (override it) and --kv-rotate.
// `prefix` names another model's cache (kld's "base-": --base-cache-type ...).
struct CacheOptions {
  std::string type = "f16", k, v, rotate = "auto", policy = "none";
  int64_t group = 64, residual = 0;
  KvCacheSpec spec() const;
  // The C API's form (its strings point into this object).
  lmpress_cache_params c_params() const;
  KvPolicy eviction() const { return parse_kv_policy(policy); }
};
void add_cache_options(CLI::App* cmd, CacheOptions& o, const std::string& prefix = "");
// --kv-policy (the commands whose cache is an InferenceState's: generate, perplexity, kld).
void add_kv_policy_option(CLI::App* cmd, CacheOptions& o);
// --spec TYPE, --draft-max, --draft-min, --draft-p-min (generate, bench).
void add_spec_options(CLI::App* cmd, SpecOptions& spec);
// --spec self:skip:auto:N: the N blocks whose skipping alone loses least
// (mean KLD on the first window of --spec-calib text, eval/layer_skip.h),
// written into spec.type as a list; returns a line saying which (empty for
// other types).
std::string resolve_spec(SpecOptions& spec, const Model& m, int64_t n_ctx);
// --early-exit THRESHOLD, --exit-layer K, --exit-measure M (generate,
// perplexity; kld: the candidate's): model/early_exit.h.
struct EarlyExitOptions {
  double threshold = -1;  // < 0: off
  int64_t layer = -1;     // -1: block n_layers / 2 - 1
  std::string measure = "softmax";
  EarlyExit resolve(const ModelConfig& c) const;  // checked against the model
  // The C API's form (measure points into this object).
  lmpress_early_exit_params c_params() const { return {threshold, layer, measure.c_str()}; }
};
void add_early_exit_options(CLI::App* cmd, EarlyExitOptions& o);
// --chunks: -1 (all) or N >= 1.
const CLI::Validator& chunk_count();
// --damp: a fraction in (0, 1].
const CLI::Validator& damp_fraction();
// JSON for printing: invalid UTF-8 in a path, tensor or token name becomes
// U+FFFD instead of an exception that loses the results.
template <class Json>
std::string json_text(const Json& j) {
  return j.dump(2, ' ', false, Json::error_handler_t::replace);
}

}  // namespace lmpress::cli
