// lmpress eval MODEL --tasks arc_easy,piqa,lambada [--limit N] [-f TEXT]:
// zero-shot task accuracies (lm-evaluation-harness definitions) and, with -f,
// perplexity, from one command.
#include <nlohmann/json.hpp>

#include "commands.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "eval/perplexity.h"
#include "kernels/matmul.h"
#include "model/model.h"
#include "model/repack.h"
#include "task_runner.h"

namespace lmpress::cli {

void add_eval(CLI::App& app) {
  struct Opts {
    std::string model, tasks, task_dir = default_task_dir(), samples, file, protocol = "llama.cpp";
    int64_t limit = -1, ctx = 512;
    int threads = 0;
    bool json = false;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("eval", "Zero-shot task accuracy (and perplexity with -f) of a model");
  add_path_option(cmd, "model", o->model, "Model", PathRole::Model)->required();
  cmd->add_option("--tasks", o->tasks, "Comma-separated task names (files NAME.jsonl in --task-dir) or JSONL paths");
  cmd->add_option("--task-dir", o->task_dir, "Where task names are looked up ($LMPRESS_TASK_DIR)")->capture_default_str();
  cmd->add_option("--limit", o->limit, "Only the first N items of each task")->check(CLI::Range(int64_t(1), int64_t(1) << 40));
  add_path_option(cmd, "--log-samples", o->samples, "Write one JSON line per item (scores and decisions) to this file",
                  PathRole::Output);
  add_path_option(cmd, "-f,--file", o->file, "Also report perplexity of this text", PathRole::Input);
  cmd->add_option("-c,--ctx", o->ctx, "Perplexity window")->capture_default_str()->check(CLI::Range(4, 1 << 20));
  cmd->add_option("--protocol", o->protocol, "Perplexity protocol: llama.cpp or gptq")->capture_default_str();
  cmd->add_flag("--json", o->json, "Print JSON");
  add_threads_option(cmd, o->threads);
  add_derived_paths(cmd, "--tasks", PathRole::Input, [o] { return task_files(o->tasks, o->task_dir); });
  on_run(cmd, [o] {
    if (o->tasks.empty() && o->file.empty()) fail("eval: nothing to do; give --tasks and/or -f TEXT");
    set_num_threads(o->threads);
    const PplProtocol protocol = parse_ppl_protocol(o->protocol);
    std::vector<Task> tasks;
    if (!o->tasks.empty()) tasks = load_tasks(split_task_list(o->tasks), o->task_dir, o->limit);
    auto m = load_for_inference(o->model);
    if (!m->tokenizer) fail("{}: the model has no tokenizer", m->path);
    nlohmann::ordered_json j{{"model", m->path}};
    if (!o->file.empty()) {
      std::string text = read_input_text(o->file);
      if (protocol == PplProtocol::Gptq) text = gptq_protocol_text(text);
      const auto r = perplexity(*m, m->tokenizer->encode(text, true, false), PerplexityOptions{o->ctx, -1, 2048, protocol});
      j["perplexity"] = {{"file", o->file}, {"protocol", o->protocol}, {"ctx", o->ctx}, {"ppl", r.ppl},
                         {"ppl_stderr", r.ppl_stderr}, {"tokens_scored", r.n_tokens_scored}};
      if (!o->json) fmt::print("perplexity ({}, ctx {}): {:.4f} ± {:.4f}\n", o->protocol, o->ctx, r.ppl, r.ppl_stderr);
    }
    std::string samples;
    nlohmann::ordered_json jt = nlohmann::json::object();
    if (!tasks.empty() && !o->json) {
      fmt::print("| {:<16} | {:>5} | {:>16} | {:>16} | {:>10} |\n", "task", "n", "acc", "acc_norm", "ppl");
      fmt::print("|{:-<18}|{:->6}:|{:->17}:|{:->17}:|{:->11}:|\n", "", "", "", "", "");
    }
    for (const Task& t : tasks) {
      const TaskResult r = run_task(*m, t);
      jt[t.name] = task_result_json(r);
      if (!o->samples.empty()) append_task_samples(samples, t, r);
      if (o->json) continue;
      const auto pct = [](const ValueErr& v) { return fmt::format("{:.2f} ± {:.2f}", 100 * v.value, 100 * v.stderr_); };
      fmt::print("| {:<16} | {:>5} | {:>16} | {:>16} | {:>10} |\n", t.name, r.n, pct(r.acc),
                 r.kind == TaskKind::MultipleChoice ? pct(r.acc_norm) : "",
                 r.kind == TaskKind::Lambada ? fmt::format("{:.4g}", r.ppl.value) : "");
      std::fflush(stdout);
    }
    if (!tasks.empty()) j["tasks"] = jt;
    if (!o->samples.empty()) write_file_atomic(o->samples, samples);
    if (o->json) fmt::print("{}\n", json_text(j));
  });
}

}  // namespace lmpress::cli
