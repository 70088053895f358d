// lmpress bench MODEL -p 512 -n 128 -t 2 -r 5: prompt-processing and
// generation speed like llama-bench (same tests, same JSON fields), plus the
// machine's memory bandwidth and the share of the bandwidth bound reached.
#include <nlohmann/json.hpp>

#include <chrono>
#include <ctime>
#include <fstream>
#include <map>

#include <unistd.h>

#include "commands.h"
#include "core/error.h"
#include "eval/speed.h"
#include "model/repack.h"
#include "kernels/matmul.h"
#include "model/model.h"
#include "compress/mix.h"
#include "runtime/generate.h"

namespace lmpress::cli {

namespace {

std::string cpu_name() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) return line.substr(colon + 2);
    }
  return "unknown CPU";
}

std::string params_label(int64_t n) {
  if (n >= 1000000000) return fmt::format("{:.1f}B", double(n) / 1e9);
  if (n >= 1000000) return fmt::format("{:.0f}M", double(n) / 1e6);
  return fmt::format("{:.0f}K", double(n) / 1e3);
}

// "llama 1.1B Q4_0": architecture, size and the type holding most weights.
std::string model_desc(const Model& m) {
  std::map<DType, int64_t> weights;
  for (const auto& t : m.tensors)
    if (is_quantizable(t)) weights[t.dtype] += t.numel();
  DType top = DType::F32;
  int64_t most = -1;
  for (const auto& [d, n] : weights)
    if (n > most) top = d, most = n;
  return fmt::format("{} {} {}", m.cfg.arch, params_label(m.n_params()), dtype_name(top));
}

std::string iso_time() {
  const std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

// bench --spec: greedy generation of n tokens from a real prompt (drafts are
// only accepted on text), plain and speculative runs alternating.
struct SpecBench {
  int64_t n_gen = 0;
  std::vector<double> plain_ts, spec_ts;
  SpecStats stats;  // summed over the timed speculative runs
};

std::vector<SpecBench> run_spec_bench(const Model& m, const std::string& prompt, const DraftSource& source,
                                      const SpeedOptions& so, bool progress) {
  std::vector<SpecBench> out;
  for (int64_t n : so.n_gen) {
    if (n <= 0) continue;
    SpecBench b;
    b.n_gen = n;
    GenerateOptions g;
    g.n_predict = n;
    g.stop_at_eos = false;
    g.kv = so.kv;
    g.draft_max = source.options().draft_max;
    g.draft_min = source.options().draft_min;
    for (int r = 0; r <= so.reps; r++) {  // round 0 warms up
      g.drafter = nullptr;
      const GenerateStats plain = generate(m, prompt, g, nullptr);
      std::unique_ptr<Drafter> drafter = source.make(g.sampling);
      g.drafter = drafter.get();
      const GenerateStats spec = generate(m, prompt, g, nullptr);
      if (plain.tokens != spec.tokens)
        fail("bench --spec: speculative decoding gave other tokens than plain decoding (a bug: please report it)");
      if (r == 0) continue;
      b.plain_ts.push_back(plain.gen_tps());
      b.spec_ts.push_back(spec.gen_tps());
      b.stats += spec.spec;
      if (progress) fmt::print(stderr, "\rtg{}: round {}/{}", n, r, so.reps);
    }
    if (progress) fmt::print(stderr, "\n");
    out.push_back(std::move(b));
  }
  return out;
}

void print_spec_bench(const Model& m, const std::string& path, SpecOptions spec, const std::string& prompt,
                      const SpeedOptions& so, bool json) {
  if (!m.tokenizer) fail("{}: the model has no tokenizer", path);
  const int64_t n_ctx = m.cfg.ctx_len;
  if (const std::string chose = resolve_spec(spec, m, n_ctx); !chose.empty() && !json) fmt::print(stderr, "{}\n", chose);
  const DraftSource source(spec, m, n_ctx);
  const auto runs = run_spec_bench(m, prompt, source, so, !json && isatty(2));
  const int threads = num_threads();
  if (json) {
    nlohmann::ordered_json arr = nlohmann::json::array();
    for (const auto& b : runs) {
      nlohmann::ordered_json j{{"cpu_info", cpu_name()},           {"model_filename", path},
                               {"model_type", model_desc(m)},      {"n_threads", threads},
                               {"type_k", kv_type_name(so.kv.k)},  {"type_v", kv_type_name(so.kv.v)},
                               {"n_gen", b.n_gen},                 {"test_time", iso_time()},
                               {"avg_ts", mean_of(b.spec_ts)},        {"stddev_ts", stddev_of(b.spec_ts)},
                               {"samples_ts", b.spec_ts},          {"plain_avg_ts", mean_of(b.plain_ts)},
                               {"plain_stddev_ts", stddev_of(b.plain_ts)}, {"plain_samples_ts", b.plain_ts},
                               {"ratio", mean_of(b.spec_ts) / mean_of(b.plain_ts)}};
      j["spec"] = spec_json(spec, b.stats);
      arr.push_back(j);
    }
    fmt::print("{}\n", json_text(arr));
    return;
  }
  fmt::print("| {:<24} | {:>7} | {:>6} | {:>18} | {:>18} | {:>6} | {:>10} | {:>9} |\n", "model", "threads", "test",
             "plain t/s", "spec t/s", "ratio", "acceptance", "per pass");
  fmt::print("| {:-<24} | {:->7} | {:->6} | {:->18} | {:->18} | {:->6} | {:->10} | {:->9} |\n", "", "", "", "", "", "",
             "", "");
  for (const auto& b : runs)
    fmt::print("| {:<24} | {:>7} | {:>6} | {:>18} | {:>18} | {:>5.2f}x | {:>9.1f}% | {:>9.2f} |\n", model_desc(m),
               threads, fmt::format("tg{}", b.n_gen), fmt::format("{:.2f} ± {:.2f}", mean_of(b.plain_ts), stddev_of(b.plain_ts)),
               fmt::format("{:.2f} ± {:.2f}", mean_of(b.spec_ts), stddev_of(b.spec_ts)), mean_of(b.spec_ts) / mean_of(b.plain_ts),
               100.0 * b.stats.acceptance_rate(), b.stats.mean_accepted());
  fmt::print("\n--spec {}, draft {}..{}, greedy, EOS ignored; plain and speculative runs alternate ({} each after a "
             "warm-up pair)\n",
             spec.type, spec.draft_min, spec.draft_max, so.reps);
  if (!runs.empty()) fmt::print("{}\n", spec_summary(spec_json(spec, runs.back().stats)));
}

}  // namespace

void add_bench(CLI::App& app) {
  struct Opts {
    std::string model;
    SpeedOptions s;
    int threads = 0;
    bool json = false, no_bandwidth = false, dense = false;
    CacheOptions kv;
    SpecOptions spec;
    std::string file;  // --spec's prompt
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("bench", "Prompt-processing and generation speed, like llama-bench");
  add_path_option(cmd, "model", o->model, "Model", PathRole::Model)->required();
  cmd->add_option("-p,--n-prompt", o->s.n_prompt, "Prompt lengths to test (0: none)")
      ->delimiter(',')
      ->capture_default_str()
      ->check(CLI::Range(0, 1 << 20));
  cmd->add_option("-n,--n-gen", o->s.n_gen, "Generation lengths to test (0: none)")
      ->delimiter(',')
      ->capture_default_str()
      ->check(CLI::Range(0, 1 << 20));
  cmd->add_option("-d,--n-depth", o->s.n_depth, "Cache depths the tests start at (llama-bench's -d)")
      ->delimiter(',')
      ->capture_default_str()
      ->check(CLI::Range(0, 1 << 20));
  cmd->add_option("-r,--repetitions", o->s.reps, "Repetitions of each test")->capture_default_str()->check(CLI::Range(1, 1000));
  cmd->add_option("-b,--batch-size", o->s.n_batch, "Prompt tokens per batch")->capture_default_str()->check(CLI::Range(1, 1 << 16));
  cmd->add_flag("--no-bandwidth", o->no_bandwidth, "Skip the memory-bandwidth measurement");
  cmd->add_flag("--json", o->json, "Print llama-bench's JSON (-o json) instead of the table");
  cmd->add_flag("--dense", o->dense,
                "Keep weights in their file layout (no 2:4, bitmap or 8-row interleaved repacking at load)");
  add_threads_option(cmd, o->threads);
  add_cache_options(cmd, o->kv);
  add_spec_options(cmd, o->spec);
  add_path_option(cmd, "-f,--file", o->file, "--spec: the prompt, a real text (drafts are accepted only on text)",
                  PathRole::Input);
  on_run(cmd, [o, cmd] {
    set_num_threads(o->threads);
    o->s.kv = o->kv.spec();
    if (!o->spec.type.empty()) {
      if (o->file.empty()) fail("bench --spec needs -f PROMPT: random tokens, as the plain tests use, accept no drafts");
      if (cmd->count("-p") || cmd->count("-d"))
        fail("bench --spec times generation only (-n) from the prompt of -f: drop -p and -d");
    } else if (!o->file.empty()) {
      fail("bench -f: the prompt is for --spec only (the plain tests run random tokens, as llama-bench's)");
    }
    auto m = load_model(o->model);
    const InferenceRepack repacked = o->dense ? InferenceRepack{} : repack_for_inference(*m);
    if (repacked.sparse.total() && !o->json)
      fmt::print("sparse weight matrices repacked: {} as 2:4 (F16_2of4 / Q8_0_2of4), {} as F16_bitmap\n",
                 repacked.sparse.n_2of4, repacked.sparse.n_bitmap);
    if (repacked.interleaved && !o->json)
      fmt::print("Q4_0/Q5_0/Q8_0/Q4_K/IQ4_NL weight matrices repacked as 8-row groups (Q4_0_x8, Q5_0_x8, Q8_0_x8, Q4_K_x8, IQ4_NL_x8): {}\n", repacked.interleaved);
    if (repacked.int8_rows && !o->json)
      fmt::print("W8A8 int8 weight matrices repacked as 8-row groups (I8_x8): {}\n", repacked.int8_rows);
    if (!o->spec.type.empty()) return print_spec_bench(*m, o->model, o->spec, read_input_text(o->file), o->s, o->json);
    int64_t reach = 0;
    for (int64_t d : o->s.n_depth)
      for (const auto* lens : {&o->s.n_prompt, &o->s.n_gen})
        for (int64_t n : *lens) reach = std::max(reach, d + n);
    if (m->cfg.ctx_len > 0 && reach > m->cfg.ctx_len)
      fmt::print(stderr,
                 "warning: tests reach {} positions, past the model's trained context of {} (timed all the same, as "
                 "llama-bench does)\n",
                 reach, m->cfg.ctx_len);
    const auto tests = run_speed_tests(*m, o->s);
    Bandwidth bw;
    if (!o->no_bandwidth) bw = measure_triad_bandwidth();
    const double per_token = double(bytes_per_token(*m));
    const double bound = bw.bytes_per_s > 0 ? bw.bytes_per_s / per_token : 0.0;
    const int threads = num_threads();
    if (o->json) {
      nlohmann::ordered_json arr = nlohmann::json::array();
      for (const auto& t : tests) {
        nlohmann::ordered_json j{{"build_commit", "lmpress"}, {"build_number", 0}, {"cpu_info", cpu_name()},
                                 {"gpu_info", ""}, {"backends", "CPU"}, {"model_filename", o->model},
                                 {"model_type", model_desc(*m)}, {"model_size", m->n_bytes()},
                                 {"model_n_params", m->n_params()}, {"n_batch", o->s.n_batch},
                                 {"n_ubatch", o->s.n_batch}, {"n_threads", threads}, {"cpu_mask", "0x0"},
                                 {"cpu_strict", false}, {"poll", 50}, {"type_k", kv_type_name(o->s.kv.k)}, {"type_v", kv_type_name(o->s.kv.v)},
                                 {"n_gpu_layers", 0}, {"split_mode", "layer"}, {"main_gpu", 0},
                                 {"no_kv_offload", false}, {"flash_attn", true}, {"tensor_split", "0.00"},
                                 {"use_mmap", true}, {"embeddings", false}, {"n_prompt", t.n_prompt},
                                 {"n_gen", t.n_gen}, {"n_depth", t.n_depth}, {"test_time", iso_time()}, {"avg_ns", int64_t(t.avg_ns())},
                                 {"stddev_ns", int64_t(t.stddev_ns())}, {"avg_ts", t.avg_ts()},
                                 {"stddev_ts", t.stddev_ts()}, {"samples_ns", t.samples_ns},
                                 {"samples_ts", t.samples_ts()}};
        if (t.n_gen > 0 && bound > 0) {
          j["mem_bandwidth_gbs"] = bw.bytes_per_s / 1e9;
          j["bandwidth_bound_ts"] = bound;
          j["bandwidth_bound_share"] = t.avg_ts() / bound;
        }
        arr.push_back(j);
      }
      fmt::print("{}\n", json_text(arr));
      return;
    }
    const double mib = 1024.0 * 1024.0;
    fmt::print("| {:<24} | {:>10} | {:>8} | {:<7} | {:>7} | {:>8} | {:>20} |\n", "model", "size", "params", "backend",
               "threads", "test", "t/s");
    fmt::print("| {:-<24} | {:->10} | {:->8} | {:-<7} | {:->7} | {:->8} | {:->20} |\n", "", "", "", "", "", "", "");
    for (const auto& t : tests)
      fmt::print("| {:<24} | {:>10} | {:>8} | {:<7} | {:>7} | {:>8} | {:>20} |\n", model_desc(*m),
                 fmt::format("{:.2f} MiB", double(m->n_bytes()) / mib), params_label(m->n_params()), "CPU",
                 threads, t.name(), fmt::format("{:.2f} ± {:.2f}", t.avg_ts(), t.stddev_ts()));
    double per_position = 0;
    for (int64_t l = 0; l < m->cfg.n_layers; l++) per_position += o->s.kv.bytes_per_position(m->cfg.kv_dim(l));
    int64_t most = 0;
    for (const auto& t : tests) most = std::max(most, t.n_depth + t.n_prompt + t.n_gen);
    fmt::print("\nKV cache: {}, {:.1f} bytes per position, {:.2f} MiB at {} positions\n", kv_spec_name(o->s.kv),
               per_position, per_position * double(most) / mib, most);
    if (bound > 0) {
      fmt::print("\nmemory bandwidth (STREAM triad, {} threads): {:.1f} GB/s; a token reads {:.1f} MB of weights, "
                 "so generation is bounded by {:.1f} t/s\n",
                 threads, bw.bytes_per_s / 1e9, per_token / 1e6, bound);
      for (const auto& t : tests)
        if (t.n_gen > 0) fmt::print("{}: {:.1f}% of the bandwidth bound\n", t.name(), 100.0 * t.avg_ts() / bound);
    }
  });
}

}  // namespace lmpress::cli
