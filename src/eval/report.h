// The `compare` report: one row per model file (size, bits per weight,
// perplexity, its change and the KL divergence from the first file, task
// accuracies, speed), rendered as a Markdown table, JSON, and an SVG plot of
// perplexity against size with the Pareto front (the files no other file
// beats on both).
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace lmpress {

struct CompareRow {
  std::string label, path;
  uint64_t size_bytes = 0;
  int64_t n_params = 0;
  double ppl = 0, ppl_err = 0;
  // Against the first row (absent on the first row itself).
  std::optional<double> dppl, dppl_err, kld, kld_err, same_top, same_top_err;
  std::map<std::string, double> task_acc, task_acc_err;  // task name -> acc
  std::optional<double> pp_ts, tg_ts;                    // with --bench
  // Per decoded token at the compare's context (model/cost.h): MACs, weight
  // bytes read, KV-cache bytes per position (f16 cache). 0: not measured.
  double macs = 0, weight_bytes = 0, kv_bytes_per_position = 0;
  // How the file was made, for the plots' colours: one of compare_methods().
  std::string method = "original";

  double bits_per_weight() const { return n_params > 0 ? 8.0 * double(size_bytes) / double(n_params) : 0; }
};

// The methods the plots tell apart, each its colour and marker.
const std::vector<std::string>& compare_methods();
// A file's method guessed from its name (the first file: "original"): gptq,
// awq, pruned (prune, wanda, sparsegpt, magnitude, 2of4, 2-4), float (16 or
// more bits per weight), else rtn.
std::string guess_method(const std::string& path, double bits_per_weight, bool first);

// The table: a header row, then one row of cells per file.
std::vector<std::vector<std::string>> compare_table(const std::vector<CompareRow>& rows);
std::string compare_markdown(const std::vector<CompareRow>& rows);
nlohmann::ordered_json compare_json(const std::vector<CompareRow>& rows);
// Perplexity against size, with the Pareto front.
std::string compare_svg(const std::vector<CompareRow>& rows, const std::string& title);
// Every plot the rows have data for: (title, SVG) — perplexity and speed
// against size, ΔPPL and KLD against bits per weight.
std::vector<std::pair<std::string, std::string>> compare_plots(const std::vector<CompareRow>& rows,
                                                               const std::string& title);
// One self-contained HTML page: the table and every plot inline, no network.
std::string compare_html(const std::vector<CompareRow>& rows, const std::string& title);
// Indices of the rows on the Pareto front of (size, ppl), smallest size first.
std::vector<size_t> pareto_front(const std::vector<CompareRow>& rows);

// Bytes on disk: a file, or every regular file in a directory (a Hugging Face model).
uint64_t model_disk_bytes(const std::string& path);

}  // namespace lmpress
