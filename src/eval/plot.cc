#include "eval/plot.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace lmpress {

namespace {

constexpr double W = 760, H = 460, L = 78, R = 150, T = 40, B = 55;  // R: the legend's column

struct Box {
  double x0, y0, x1, y1;
  bool hits(const Box& o) const { return x0 < o.x1 && o.x0 < x1 && y0 < o.y1 && o.y0 < y1; }
};

// An axis over [lo, hi] of data values, mapped onto [a, b] pixels.
struct Axis {
  double lo, hi, a, b;
  bool log;
  double f(double v) const { return log ? std::log10(v) : v; }
  double px(double v) const { return a + (f(v) - f(lo)) / (f(hi) - f(lo)) * (b - a); }
  std::vector<double> ticks() const {
    std::vector<double> t;
    if (log) {
      for (double e = std::floor(std::log10(lo)); e <= std::ceil(std::log10(hi)); e++)
        for (double m : {1.0, 2.0, 5.0}) {
          const double v = m * std::pow(10.0, e);
          if (v >= lo * (1 - 1e-9) && v <= hi * (1 + 1e-9)) t.push_back(v);
        }
      return t;
    }
    const double span = hi > lo ? hi - lo : std::max(1.0, std::fabs(hi));
    const double raw = span / 5, mag = std::pow(10.0, std::floor(std::log10(raw)));
    const double step = raw / mag < 1.5 ? mag : raw / mag < 3.5 ? 2 * mag : raw / mag < 7.5 ? 5 * mag : 10 * mag;
    for (double v = std::ceil(lo / step) * step; v <= hi + 1e-9 * span; v += step) t.push_back(std::fabs(v) < 1e-12 * span ? 0 : v);
    return t;
  }
};

Axis make_axis(std::vector<double> v, bool log, double a, double b) {
  if (log && std::any_of(v.begin(), v.end(), [](double x) { return !(x > 0); })) log = false;
  double lo = *std::min_element(v.begin(), v.end()), hi = *std::max_element(v.begin(), v.end());
  if (log) {
    const double pad = std::pow(hi / lo, 0.06);
    lo /= pad, hi *= pad;
    if (hi / lo < 1.5) lo /= 1.25, hi *= 1.25;
  } else {
    const double pad = std::max(0.07 * (hi - lo), 0.02 * std::fabs(hi) + 1e-9);
    lo -= pad, hi += pad;
  }
  return {lo, hi, a, b, log};
}

std::string marker(const PlotSeries& s, double x, double y) {
  const std::string fill = fmt::format("fill=\"{}\"", s.colour);
  switch (s.marker) {
    case 's': return fmt::format("<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"8\" height=\"8\" {}/>", x - 4, y - 4, fill);
    case 'd':
      return fmt::format("<polygon points=\"{:.1f},{:.1f} {:.1f},{:.1f} {:.1f},{:.1f} {:.1f},{:.1f}\" {}/>", x, y - 5.5,
                         x + 5.5, y, x, y + 5.5, x - 5.5, y, fill);
    case 't':
      return fmt::format("<polygon points=\"{:.1f},{:.1f} {:.1f},{:.1f} {:.1f},{:.1f}\" {}/>", x, y - 5.5, x + 5,
                         y + 4, x - 5, y + 4, fill);
    default: return fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"4\" {}/>", x, y, fill);
  }
}

std::string tick_text(double v) { return fmt::format("{:g}", v); }

}  // namespace

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

bool wants_log_axis(const std::vector<double>& v) {
  if (v.empty() || std::any_of(v.begin(), v.end(), [](double x) { return !(x > 0); })) return false;
  return *std::max_element(v.begin(), v.end()) >= 20 * *std::min_element(v.begin(), v.end());
}

std::string plot_svg(const Plot& p) {
  if (p.points.empty()) fail("plot '{}': no points", p.title);
  for (const PlotPoint& q : p.points) {
    if (!std::isfinite(q.x) || !std::isfinite(q.y)) fail("plot '{}': {} has no finite value", p.title, q.label);
    if (q.series >= p.series.size()) fail("plot '{}': {} is in no series", p.title, q.label);
  }
  std::vector<double> xs, ys;
  for (const PlotPoint& q : p.points) xs.push_back(q.x), ys.push_back(q.y);
  const Axis ax = make_axis(xs, p.log_x, L, W - R), ay = make_axis(ys, p.log_y, H - B, T);
  std::string s = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\" "
      "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"{0}\" height=\"{1}\" fill=\"white\"/>\n"
      "<text x=\"{2}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">{3}</text>\n",
      W, H, (L + W - R) / 2, xml_escape(p.title));
  s += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#333\"/>\n", L, T,
                   W - L - R, H - T - B);
  for (double t : ax.ticks())
    s += fmt::format("<line x1=\"{0:.1f}\" y1=\"{1}\" x2=\"{0:.1f}\" y2=\"{2}\" stroke=\"#e4e4e4\"/>"
                     "<text x=\"{0:.1f}\" y=\"{3}\" text-anchor=\"middle\">{4}</text>\n",
                     ax.px(t), T, H - B, H - B + 16, tick_text(t));
  for (double t : ay.ticks())
    s += fmt::format("<line x1=\"{0}\" y1=\"{1:.1f}\" x2=\"{2}\" y2=\"{1:.1f}\" stroke=\"#e4e4e4\"/>"
                     "<text x=\"{3}\" y=\"{4:.1f}\" text-anchor=\"end\">{5}</text>\n",
                     L, ay.px(t), W - R, L - 6, ay.px(t) + 4, tick_text(t));
  s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}{}</text>\n", (L + W - R) / 2, H - 15,
                   xml_escape(p.x_label), ax.log ? " (log scale)" : "");
  s += fmt::format("<text x=\"16\" y=\"{0}\" text-anchor=\"middle\" transform=\"rotate(-90 16 {0})\">{1}{2}</text>\n",
                   (T + H - B) / 2, xml_escape(p.y_label), ay.log ? " (log scale)" : "");
  if (p.line.size() > 1) {
    std::string pts;
    for (size_t i : p.line) pts += fmt::format("{:.1f},{:.1f} ", ax.px(p.points[i].x), ay.px(p.points[i].y));
    s += "<polyline points=\"" + pts + "\" fill=\"none\" stroke=\"#888\" stroke-dasharray=\"5,3\"/>\n";
  }
  // Points first: every marker is an obstacle for every label.
  std::vector<Box> taken;
  for (const PlotPoint& q : p.points) {
    const double x = ax.px(q.x), y = ay.px(q.y);
    s += marker(p.series[q.series], x, y) + "\n";
    taken.push_back({x - 6, y - 6, x + 6, y + 6});
  }
  // Each label at the first free place of rings around its point (right,
  // left, above, below, then the diagonals), farther out until one is free;
  // from the second ring on, a leader line joins it to its point. Points are
  // labelled from the most crowded region outwards: in x order.
  std::vector<size_t> order(p.points.size());
  for (size_t i = 0; i < order.size(); i++) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return p.points[a].x != p.points[b].x ? p.points[a].x < p.points[b].x : p.points[a].y < p.points[b].y;
  });
  const Box frame{L + 2, T + 2, W - R - 2, H - B - 2};
  const double th = kPlotFontSize + 3;  // a label's box height
  for (size_t i : order) {
    const PlotPoint& q = p.points[i];
    const double x = ax.px(q.x), y = ay.px(q.y), tw = double(q.label.size()) * kPlotCharWidth + 2;
    Box best{};
    bool found = false, leader = false;
    for (int ring = 0; ring < 40 && !found; ring++) {
      const double d = 7 + ring * (th * 0.8);
      // (dx, dy) directions: box placed with its near edge d pixels from the point.
      const double dirs[8][2] = {{1, 0}, {-1, 0}, {0, -1}, {0, 1}, {1, -1}, {-1, -1}, {1, 1}, {-1, 1}};
      for (const auto& dir : dirs) {
        const double cx = x + dir[0] * (d + (dir[0] != 0 ? tw / 2 : 0));
        const double cy = y + dir[1] * (d + (dir[1] != 0 ? th / 2 : 0));
        const Box b{cx - tw / 2, cy - th / 2, cx + tw / 2, cy + th / 2};
        if (b.x0 < frame.x0 || b.x1 > frame.x1 || b.y0 < frame.y0 || b.y1 > frame.y1) continue;
        if (std::any_of(taken.begin(), taken.end(), [&](const Box& o) { return b.hits(o); })) continue;
        best = b, found = true, leader = ring > 0;
        break;
      }
    }
    if (!found) {  // nowhere free inside the frame: right of the point, over whatever is there
      best = {x + 7, y - th / 2, x + 7 + tw, y + th / 2};
    }
    taken.push_back(best);
    s += "<g class=\"label\">";
    if (leader) {
      // From the point to the nearest point of the box.
      const double lx = std::clamp(x, best.x0, best.x1), ly = std::clamp(y, best.y0, best.y1);
      s += fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"#999\" "
                       "stroke-width=\"0.8\"/>",
                       x, y, lx, ly);
    }
    s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" font-family=\"DejaVu Sans Mono, monospace\" font-size=\"{}\" "
                     "fill=\"#222\">{}</text></g>\n",
                     best.x0 + 1, best.y1 - 4, kPlotFontSize, xml_escape(q.label));
  }
  // Legend: the series that have points, then the line.
  double ly = T + 10;
  for (size_t k = 0; k < p.series.size(); k++) {
    if (std::none_of(p.points.begin(), p.points.end(), [&](const PlotPoint& q) { return q.series == k; })) continue;
    s += marker(p.series[k], W - R + 20, ly) +
         fmt::format("<text x=\"{}\" y=\"{:.1f}\">{}</text>\n", W - R + 32, ly + 4, xml_escape(p.series[k].name));
    ly += 18;
  }
  if (p.line.size() > 1)
    s += fmt::format("<line x1=\"{0}\" y1=\"{1:.1f}\" x2=\"{2}\" y2=\"{1:.1f}\" stroke=\"#888\" stroke-dasharray=\"5,3\"/>"
                     "<text x=\"{3}\" y=\"{4:.1f}\">{5}</text>\n",
                     W - R + 12, ly, W - R + 28, W - R + 32, ly + 4, xml_escape(p.line_name));
  return s + "</svg>\n";
}

}  // namespace lmpress
