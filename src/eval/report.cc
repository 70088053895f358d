#include "eval/report.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <set>

#include "core/error.h"
#include "eval/plot.h"

namespace lmpress {

namespace {

// "value ± err"; the error's format drops a sign flag ("{:+.3f}" -> "{:.3f}").
std::string opt_fmt(const std::optional<double>& v, const std::optional<double>& err, const std::string& f) {
  if (!v) return "—";
  std::string s = fmt::format(fmt::runtime(f), *v);
  std::string ef = f;
  if (const size_t plus = ef.find('+'); plus != std::string::npos) ef.erase(plus, 1);
  if (err) s += " ± " + fmt::format(fmt::runtime(ef), *err);
  return s;
}

std::set<std::string> task_names(const std::vector<CompareRow>& rows) {
  std::set<std::string> names;
  for (const auto& r : rows)
    for (const auto& [k, v] : r.task_acc) names.insert(k);
  return names;
}

// The first file's size over this one's, and this one's generation speed over the first's.
double compression(const std::vector<CompareRow>& rows, const CompareRow& r) {
  return r.size_bytes ? double(rows[0].size_bytes) / double(r.size_bytes) : 0;
}
std::optional<double> speedup(const std::vector<CompareRow>& rows, const CompareRow& r) {
  if (!r.tg_ts || !rows[0].tg_ts || *rows[0].tg_ts <= 0) return std::nullopt;
  return *r.tg_ts / *rows[0].tg_ts;
}


}  // namespace

uint64_t model_disk_bytes(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_regular_file(path, ec)) return fs::file_size(path, ec);
  uint64_t total = 0;
  if (fs::is_directory(path, ec))
    for (const auto& e : fs::directory_iterator(path, ec))
      if (e.is_regular_file(ec)) total += e.file_size(ec);
  if (total == 0) fail("{}: no model file there", path);
  return total;
}

std::vector<size_t> pareto_front(const std::vector<CompareRow>& rows) {
  std::vector<size_t> idx(rows.size());
  for (size_t i = 0; i < idx.size(); i++) idx[i] = i;
  std::sort(idx.begin(), idx.end(), [&](size_t a, size_t b) {
    return rows[a].size_bytes != rows[b].size_bytes ? rows[a].size_bytes < rows[b].size_bytes : rows[a].ppl < rows[b].ppl;
  });
  std::vector<size_t> front;
  double best = INFINITY;
  for (size_t i : idx)
    if (rows[i].ppl < best) front.push_back(i), best = rows[i].ppl;
  return front;
}

std::vector<std::vector<std::string>> compare_table(const std::vector<CompareRow>& rows) {
  const auto tasks = task_names(rows);
  const bool bench = std::any_of(rows.begin(), rows.end(), [](const CompareRow& r) { return r.tg_ts.has_value(); });
  std::vector<std::string> h = {"model", "size (MiB)", "bits/weight", "compression ×", "MMACs/token",
                                "weights MiB/token", "KV B/position", "PPL", "ΔPPL", "KLD", "same top %"};
  for (const auto& t : tasks) h.push_back(t + " acc %");
  if (bench) h.insert(h.end(), {"pp t/s", "tg t/s", "tg speedup ×"});
  std::vector<std::vector<std::string>> out{h};
  for (const auto& r : rows) {
    std::optional<double> top, top_err;
    if (r.same_top) top = 100 * *r.same_top, top_err = 100 * *r.same_top_err;
    std::vector<std::string> c = {r.label,
                                  fmt::format("{:.2f}", double(r.size_bytes) / (1 << 20)),
                                  fmt::format("{:.2f}", r.bits_per_weight()),
                                  fmt::format("{:.2f}", compression(rows, r)),
                                  fmt::format("{:.2f}", r.macs / 1e6),
                                  fmt::format("{:.2f}", r.weight_bytes / (1 << 20)),
                                  fmt::format("{:.0f}", r.kv_bytes_per_position),
                                  fmt::format("{:.3f} ± {:.3f}", r.ppl, r.ppl_err),
                                  opt_fmt(r.dppl, r.dppl_err, "{:+.3f}"),
                                  opt_fmt(r.kld, r.kld_err, "{:.5f}"),
                                  opt_fmt(top, top_err, "{:.2f}")};
    for (const auto& t : tasks) {
      auto it = r.task_acc.find(t);
      c.push_back(it == r.task_acc.end() ? "—"
                                         : fmt::format("{:.2f} ± {:.2f}", 100 * it->second, 100 * r.task_acc_err.at(t)));
    }
    if (bench)
      c.insert(c.end(), {opt_fmt(r.pp_ts, {}, "{:.1f}"), opt_fmt(r.tg_ts, {}, "{:.1f}"),
                         opt_fmt(speedup(rows, r), {}, "{:.2f}")});
    out.push_back(std::move(c));
  }
  return out;
}

std::string compare_markdown(const std::vector<CompareRow>& rows) {
  const auto t = compare_table(rows);
  std::string out;
  for (size_t i = 0; i < t.size(); i++) {
    for (const auto& c : t[i]) out += "| " + c + " ";
    out += "|\n";
    if (i == 0) {
      out += "|---";
      for (size_t k = 1; k < t[0].size(); k++) out += "|--:";
      out += "|\n";
    }
  }
  return out;
}

nlohmann::ordered_json compare_json(const std::vector<CompareRow>& rows) {
  nlohmann::ordered_json arr = nlohmann::json::array();
  const auto put = [](nlohmann::ordered_json& j, const char* k, const std::optional<double>& v) {
    if (v) j[k] = *v;
  };
  for (const auto& r : rows) {
    nlohmann::ordered_json j{{"label", r.label},     {"path", r.path},   {"size_bytes", r.size_bytes},
                             {"n_params", r.n_params}, {"bits_per_weight", r.bits_per_weight()},
                             {"compression", compression(rows, r)},
                             {"macs_per_token", r.macs}, {"weight_bytes_per_token", r.weight_bytes},
                             {"kv_bytes_per_position", r.kv_bytes_per_position},
                             {"ppl", r.ppl},         {"ppl_stderr", r.ppl_err}};
    put(j, "ppl_diff", r.dppl);
    put(j, "ppl_diff_unc", r.dppl_err);
    put(j, "kld", r.kld);
    put(j, "kld_unc", r.kld_err);
    put(j, "same_top", r.same_top);
    put(j, "same_top_unc", r.same_top_err);
    if (!r.task_acc.empty()) {
      nlohmann::ordered_json t = nlohmann::json::object();
      for (const auto& [k, v] : r.task_acc) t[k] = {{"acc", v}, {"acc_stderr", r.task_acc_err.at(k)}};
      j["tasks"] = t;
    }
    put(j, "pp_ts", r.pp_ts);
    put(j, "tg_ts", r.tg_ts);
    put(j, "tg_speedup", speedup(rows, r));
    arr.push_back(j);
  }
  return arr;
}

const std::vector<std::string>& compare_methods() {
  static const std::vector<std::string> m = {"original", "float", "rtn", "gptq", "awq", "pruned"};
  return m;
}

std::string guess_method(const std::string& path, double bits_per_weight, bool first) {
  if (first) return "original";
  std::string name = std::filesystem::path(path).filename().string();
  if (name.empty()) name = std::filesystem::path(path).parent_path().filename().string();
  std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  for (const char* k : {"prune", "wanda", "sparsegpt", "magnitude", "2of4", "2-4"})
    if (name.find(k) != std::string::npos) return "pruned";
  if (name.find("gptq") != std::string::npos) return "gptq";
  if (name.find("awq") != std::string::npos) return "awq";
  return bits_per_weight >= 16 ? "float" : "rtn";
}

namespace {

Plot method_plot() {
  static const PlotSeries style[] = {{"original", "#000000", 's'}, {"float", "#7f7f7f", 's'}, {"RTN", "#1f77b4", 'o'},
                                     {"GPTQ", "#ff7f0e", 'd'},     {"AWQ", "#2ca02c", 't'},   {"pruned", "#9467bd", 'o'}};
  Plot p;
  p.series.assign(std::begin(style), std::end(style));
  return p;
}

size_t method_index(const CompareRow& r) {
  const auto& m = compare_methods();
  const auto it = std::find(m.begin(), m.end(), r.method);
  if (it == m.end()) fail("compare: method '{}' of {} is not one of original, float, rtn, gptq, awq, pruned", r.method, r.label);
  return size_t(it - m.begin());
}

double mib(uint64_t b) { return double(b) / (1 << 20); }

}  // namespace

std::string compare_svg(const std::vector<CompareRow>& rows, const std::string& title) {
  if (rows.empty()) fail("compare: nothing to plot");
  Plot p = method_plot();
  p.title = title, p.x_label = "size (MiB)", p.y_label = "perplexity";
  for (const auto& r : rows) p.points.push_back({mib(r.size_bytes), r.ppl, r.label, method_index(r)});
  p.line = pareto_front(rows);
  p.line_name = "Pareto front";
  std::vector<double> ys;
  for (const auto& q : p.points) ys.push_back(q.y);
  p.log_y = wants_log_axis(ys);
  return plot_svg(p);
}

std::vector<std::pair<std::string, std::string>> compare_plots(const std::vector<CompareRow>& rows,
                                                               const std::string& title) {
  std::vector<std::pair<std::string, std::string>> out{{title, compare_svg(rows, title)}};
  // ΔPPL and KLD against bits per weight, for the files compared with the first.
  for (const bool kld : {false, true}) {
    Plot p = method_plot();
    p.title = kld ? "KL divergence against bits per weight" : "ΔPPL against bits per weight";
    p.x_label = "bits per weight", p.y_label = kld ? "KLD" : "ΔPPL";
    std::vector<double> ys;
    for (const auto& r : rows) {
      const auto& v = kld ? r.kld : r.dppl;
      if (!v) continue;
      p.points.push_back({r.bits_per_weight(), *v, r.label, method_index(r)});
      ys.push_back(*v);
    }
    if (p.points.empty()) continue;
    p.log_y = wants_log_axis(ys);
    out.emplace_back(p.title, plot_svg(p));
  }
  {
    Plot p = method_plot();
    p.title = "generation speed against size", p.x_label = "size (MiB)", p.y_label = "generation (tokens/s)";
    for (const auto& r : rows)
      if (r.tg_ts) p.points.push_back({mib(r.size_bytes), *r.tg_ts, r.label, method_index(r)});
    if (!p.points.empty()) out.emplace_back(p.title, plot_svg(p));
  }
  return out;
}


std::string compare_html(const std::vector<CompareRow>& rows, const std::string& title) {
  std::string h = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>" + xml_escape(title) +
                  "</title>\n<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
                  "td,th{border:1px solid #ccc;padding:3px 8px}td{text-align:right}td:first-child{text-align:left}"
                  "th{background:#f3f3f3}svg{display:block;margin:1.5em 0}</style></head>\n<body>\n<h1>" +
                  xml_escape(title) + "</h1>\n<table>\n";
  const auto t = compare_table(rows);
  for (size_t i = 0; i < t.size(); i++) {
    h += "<tr>";
    for (const auto& c : t[i]) h += (i == 0 ? "<th>" : "<td>") + xml_escape(c) + (i == 0 ? "</th>" : "</td>");
    h += "</tr>\n";
  }
  h += "</table>\n";
  for (const auto& [name, svg] : compare_plots(rows, title)) h += "<h2>" + xml_escape(name) + "</h2>\n" + svg;
  return h + "</body></html>\n";
}

}  // namespace lmpress
