// lmpress compare BASE CANDIDATE... -f TEXT [--tasks ...] [--bench] [--out PREFIX]:
// evaluates several files of one model and writes the comparison as a
// Markdown table, JSON and an SVG plot of perplexity against size.
#include <filesystem>

#include "commands.h"
#include "model/cost.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "eval/kld.h"
#include "eval/report.h"
#include "eval/speed.h"
#include "kernels/matmul.h"
#include "model/model.h"
#include "model/repack.h"
#include "task_runner.h"

namespace lmpress::cli {

namespace {

std::vector<std::string> compare_outputs(const std::string& prefix) {
  if (prefix.empty()) return {};
  return {prefix + ".md", prefix + ".json", prefix + ".svg", prefix + ".html"};
}

}  // namespace

void add_compare(CLI::App& app) {
  struct Opts {
    std::vector<std::string> models, labels, methods;
    std::string file, tasks, task_dir = default_task_dir(), out, title = "perplexity against size";
    int64_t ctx = 512, chunks = -1, limit = -1, n_prompt = 512, n_gen = 128;
    int reps = 3, threads = 0;
    bool bench = false, json = false;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("compare", "Compare files of one model: size, PPL, KLD, tasks, speed (Markdown, JSON, SVG)");
  add_path_option(cmd, "models", o->models, "Models; the first is the base the others are compared with", PathRole::Model)->required();
  add_path_option(cmd, "-f,--file", o->file, "Text for perplexity and KL divergence", PathRole::Input)->required();
  cmd->add_option("-c,--ctx", o->ctx, "Window size in tokens")->capture_default_str()->check(CLI::Range(4, 1 << 20));
  cmd->add_option("--chunks", o->chunks, "Evaluate only the first K windows (-1: all)")->capture_default_str()->check(chunk_count());
  cmd->add_option("--tasks", o->tasks, "Also zero-shot tasks (comma-separated names or JSONL paths)");
  cmd->add_option("--task-dir", o->task_dir, "Where task names are looked up")->capture_default_str();
  cmd->add_option("--limit", o->limit, "Only the first N items of each task")->check(CLI::Range(int64_t(1), int64_t(1) << 40));
  cmd->add_flag("--bench", o->bench, "Also measure prompt and generation speed");
  cmd->add_option("-p,--n-prompt", o->n_prompt, "Prompt tokens for --bench")->capture_default_str()->check(CLI::Range(1, 1 << 16));
  cmd->add_option("-n,--n-gen", o->n_gen, "Generated tokens for --bench")->capture_default_str()->check(CLI::Range(1, 1 << 16));
  cmd->add_option("-r,--repetitions", o->reps, "Repetitions for --bench")->capture_default_str()->check(CLI::Range(1, 100));
  cmd->add_option("--labels", o->labels, "Row labels (default: file names)")->delimiter(',');
  cmd->add_option("--methods", o->methods,
                  "How each file was made, for the plots' colours: original, float, rtn, gptq, awq, pruned "
                  "(default: guessed from the file names)")
      ->delimiter(',')
      ->check(CLI::IsMember(compare_methods()));
  cmd->add_option("--out", o->out,
                  "Write PREFIX.md, PREFIX.json, PREFIX.svg (perplexity against size) and PREFIX.html (the table "
                  "and every plot)");
  add_derived_paths(cmd, "--out", PathRole::Output, [o] { return compare_outputs(o->out); });
  add_derived_paths(cmd, "--tasks", PathRole::Input, [o] { return task_files(o->tasks, o->task_dir); });
  cmd->add_option("--title", o->title, "Plot title")->capture_default_str();
  cmd->add_flag("--json", o->json, "Print JSON instead of the table");
  add_threads_option(cmd, o->threads);
  on_run(cmd, [o] {
    if (!o->labels.empty() && o->labels.size() != o->models.size())
      fail("compare: {} labels for {} models", o->labels.size(), o->models.size());
    if (!o->methods.empty() && o->methods.size() != o->models.size())
      fail("compare: {} methods for {} models", o->methods.size(), o->models.size());
    set_num_threads(o->threads);
    std::vector<Task> tasks;
    if (!o->tasks.empty()) tasks = load_tasks(split_task_list(o->tasks), o->task_dir, o->limit);
    auto base = load_for_inference(o->models[0]);
    if (!base->tokenizer) fail("{}: the model has no tokenizer", base->path);
    const auto tokens = base->tokenizer->encode(read_input_text(o->file), true, false);
    const PerplexityOptions po{o->ctx, o->chunks, 2048};
    std::vector<CompareRow> rows;
    for (size_t i = 0; i < o->models.size(); i++) {
      std::unique_ptr<Model> owned = i == 0 ? nullptr : load_for_inference(o->models[i]);
      const Model& m = i == 0 ? *base : *owned;
      CompareRow row;
      row.path = o->models[i];
      row.label = o->labels.empty() ? std::filesystem::path(o->models[i]).filename().string() : o->labels[i];
      row.size_bytes = model_disk_bytes(o->models[i]);
      row.n_params = m.n_params();
      row.method = o->methods.empty() ? guess_method(o->models[i], row.bits_per_weight(), i == 0) : o->methods[i];
      const TokenCost cost = token_cost(m, o->ctx);
      row.macs = cost.macs();
      row.weight_bytes = cost.weight_bytes;
      row.kv_bytes_per_position = cost.kv_bytes_per_position;
      if (i == 0) {
        const auto r = perplexity(m, tokens, po);
        row.ppl = r.ppl, row.ppl_err = r.ppl_stderr;
      } else {
        const auto r = kl_divergence(*base, m, tokens, po);
        row.ppl = r.ppl.value, row.ppl_err = r.ppl.unc;
        row.dppl = r.ppl_diff.value, row.dppl_err = r.ppl_diff.unc;
        row.kld = r.kld.value, row.kld_err = r.kld.unc;
        row.same_top = r.same_top.value, row.same_top_err = r.same_top.unc;
      }
      for (const Task& t : tasks) {
        const auto r = run_task(m, t);
        row.task_acc[t.name] = r.acc.value;
        row.task_acc_err[t.name] = r.acc.stderr_;
      }
      if (o->bench) {
        SpeedOptions so;
        so.n_prompt = {o->n_prompt};
        so.n_gen = {o->n_gen};
        so.reps = o->reps;
        for (const auto& t : run_speed_tests(m, so)) (t.n_prompt > 0 ? row.pp_ts : row.tg_ts) = t.avg_ts();
      }
      rows.push_back(std::move(row));
      if (!o->json && isatty(fileno(stderr)))
        fmt::print(stderr, "{}: PPL {:.4f}\n", rows.back().label, rows.back().ppl);
    }
    const std::string md = compare_markdown(rows);
    const auto j = compare_json(rows);
    if (!o->out.empty()) {
      const auto paths = compare_outputs(o->out);
      write_file_atomic(paths[0], md);
      write_file_atomic(paths[1], json_text(j) + "\n");
      write_file_atomic(paths[2], compare_svg(rows, o->title));
      write_file_atomic(paths[3], compare_html(rows, o->title));
    }
    fmt::print("{}", o->json ? json_text(j) + "\n" : md);
  });
}

}  // namespace lmpress::cli
