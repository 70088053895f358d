#include "eval/report.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <set>

#include "core/error.h"

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

// About five round tick values covering [lo, hi].
std::vector<double> nice_ticks(double lo, double hi) {
  const double span = hi > lo ? hi - lo : std::max(1.0, std::fabs(hi));
  const double raw = span / 5, mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double step = raw / mag < 1.5 ? mag : raw / mag < 3.5 ? 2 * mag : raw / mag < 7.5 ? 5 * mag : 10 * mag;
  std::vector<double> t;
  for (double v = std::ceil(lo / step) * step; v <= hi + 1e-9 * span; v += step) t.push_back(v);
  return t;
}

// The first file's size over this one's, and this one's generation speed over the first's.
double compression(const std::vector<CompareRow>& rows, const CompareRow& r) {
  return r.size_bytes ? double(rows[0].size_bytes) / double(r.size_bytes) : 0;
}
std::optional<double> speedup(const std::vector<CompareRow>& rows, const CompareRow& r) {
  if (!r.tg_ts || !rows[0].tg_ts || *rows[0].tg_ts <= 0) return std::nullopt;
  return *r.tg_ts / *rows[0].tg_ts;
}

std::string xml_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '&') o += "&amp;";
    else if (c == '<') o += "&lt;";
    else if (c == '>') o += "&gt;";
    else if (c == '"') o += "&quot;";
    else o += c;
  }
  return o;
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

std::string compare_markdown(const std::vector<CompareRow>& rows) {
  const auto tasks = task_names(rows);
  const bool bench = std::any_of(rows.begin(), rows.end(), [](const CompareRow& r) { return r.tg_ts.has_value(); });
  std::string h = "| model | size (MiB) | bits/weight | compression × | MMACs/token | weights MiB/token | KV B/position | PPL | ΔPPL | KLD | same top % |",
              sep = "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|";
  for (const auto& t : tasks) h += " " + t + " acc % |", sep += "--:|";
  if (bench) h += " pp t/s | tg t/s | tg speedup × |", sep += "--:|--:|--:|";
  std::string out = h + "\n" + sep + "\n";
  for (const auto& r : rows) {
    std::optional<double> top, top_err;
    if (r.same_top) top = 100 * *r.same_top, top_err = 100 * *r.same_top_err;
    out += fmt::format("| {} | {:.2f} | {:.2f} | {:.2f} | {:.2f} | {:.2f} | {:.0f} | {:.3f} ± {:.3f} | {} | {} | {} |",
                       r.label, double(r.size_bytes) / (1 << 20), r.bits_per_weight(), compression(rows, r),
                       r.macs / 1e6, r.weight_bytes / (1 << 20), r.kv_bytes_per_position, r.ppl, r.ppl_err,
                       opt_fmt(r.dppl, r.dppl_err, "{:+.3f}"), opt_fmt(r.kld, r.kld_err, "{:.5f}"),
                       opt_fmt(top, top_err, "{:.2f}"));
    for (const auto& t : tasks) {
      auto it = r.task_acc.find(t);
      out += it == r.task_acc.end() ? " — |" : fmt::format(" {:.2f} ± {:.2f} |", 100 * it->second, 100 * r.task_acc_err.at(t));
    }
    if (bench)
      out += fmt::format(" {} | {} | {} |", opt_fmt(r.pp_ts, {}, "{:.1f}"), opt_fmt(r.tg_ts, {}, "{:.1f}"),
                         opt_fmt(speedup(rows, r), {}, "{:.2f}"));
    out += "\n";
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

std::string compare_svg(const std::vector<CompareRow>& rows, const std::string& title) {
  if (rows.empty()) fail("compare: nothing to plot");
  const double W = 720, H = 440, L = 70, R = 30, T = 40, B = 55;
  double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
  for (const auto& r : rows) {
    const double x = double(r.size_bytes) / (1 << 20);
    x0 = std::min(x0, x), x1 = std::max(x1, x), y0 = std::min(y0, r.ppl), y1 = std::max(y1, r.ppl);
  }
  const double px = std::max(0.05 * (x1 - x0), 0.05 * x1 + 1e-9), py = std::max(0.08 * (y1 - y0), 0.01 * y1 + 1e-9);
  x0 = std::max(0.0, x0 - px), x1 += px, y0 -= py, y1 += py;
  const auto X = [&](double v) { return L + (v - x0) / (x1 - x0) * (W - L - R); };
  const auto Y = [&](double v) { return H - B - (v - y0) / (y1 - y0) * (H - T - B); };
  std::string s = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\" "
      "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"{0}\" height=\"{1}\" fill=\"white\"/>\n"
      "<text x=\"{2}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">{3}</text>\n",
      W, H, W / 2, xml_escape(title));
  s += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#333\"/>\n", L, T,
                   W - L - R, H - T - B);
  for (double t : nice_ticks(x0, x1))
    s += fmt::format("<line x1=\"{0:.1f}\" y1=\"{1}\" x2=\"{0:.1f}\" y2=\"{2}\" stroke=\"#ddd\"/>"
                     "<text x=\"{0:.1f}\" y=\"{3}\" text-anchor=\"middle\">{4:g}</text>\n",
                     X(t), T, H - B, H - B + 16, t);
  for (double t : nice_ticks(y0, y1))
    s += fmt::format("<line x1=\"{0}\" y1=\"{1:.1f}\" x2=\"{2}\" y2=\"{1:.1f}\" stroke=\"#ddd\"/>"
                     "<text x=\"{3}\" y=\"{4:.1f}\" text-anchor=\"end\">{5:g}</text>\n",
                     L, Y(t), W - R, L - 6, Y(t) + 4, t);
  s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">size (MiB)</text>\n", (L + W - R) / 2, H - 15);
  s += fmt::format("<text x=\"18\" y=\"{0}\" text-anchor=\"middle\" transform=\"rotate(-90 18 {0})\">perplexity"
                   "</text>\n",
                   (T + H - B) / 2);
  std::string pts;
  for (size_t i : pareto_front(rows))
    pts += fmt::format("{:.1f},{:.1f} ", X(double(rows[i].size_bytes) / (1 << 20)), Y(rows[i].ppl));
  s += "<polyline points=\"" + pts + "\" fill=\"none\" stroke=\"#1f77b4\" stroke-dasharray=\"5,3\"/>\n";
  std::vector<std::pair<double, double>> placed;  // label anchors so far
  for (const auto& r : rows) {
    const double x = X(double(r.size_bytes) / (1 << 20)), y = Y(r.ppl);
    const bool right_half = x > (L + W - R) / 2;  // labels there extend to the left, inside the frame
    // Files of one size sit on one vertical line: move a label up until it clears the ones placed near it.
    double ly = y - 6;
    for (bool moved = true; moved;) {
      moved = false;
      for (const auto& [px, py] : placed)
        if (std::fabs(px - x) < 1 && std::fabs(py - ly) < 13) ly = py - 13, moved = true;
    }
    placed.push_back({x, ly});
    s += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"4\" fill=\"#d62728\"/>"
                     "<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"{}\">{}</text>\n",
                     x, y, right_half ? x - 6 : x + 6, ly, right_half ? "end" : "start", xml_escape(r.label));
  }
  s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"end\" fill=\"#1f77b4\">dashed: Pareto front</text>\n",
                   W - R - 6, T + 16);
  return s + "</svg>\n";
}

}  // namespace lmpress
