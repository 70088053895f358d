// Scatter plots for reports (SVG): points coloured and marked by series, every
// label placed where it overlaps no other label and no point (moved away from
// a crowded point along a leader line), linear or log axes, an optional
// dashed line through chosen points (a Pareto front).
#pragma once
#include <cstddef>
#include <string>
#include <vector>

namespace lmpress {

struct PlotSeries {
  std::string name, colour;
  char marker = 'o';  // 'o' circle, 's' square, 'd' diamond, 't' triangle
};

struct PlotPoint {
  double x = 0, y = 0;
  std::string label;
  size_t series = 0;
};

struct Plot {
  std::string title, x_label, y_label;
  bool log_x = false, log_y = false;
  std::vector<PlotSeries> series;
  std::vector<PlotPoint> points;
  std::vector<size_t> line;  // points joined by a dashed line, in this order
  std::string line_name;     // its legend entry
};

// Label text is drawn in a monospace font of kPlotFontSize px, so its box is
// known before any renderer sees it: kPlotCharWidth px per character.
constexpr double kPlotFontSize = 11, kPlotCharWidth = 6.7;

// Labels are each in a <g class="label">, the rest of the drawing outside them.
std::string plot_svg(const Plot& p);

// Text for XML (SVG, HTML): & < > " escaped.
std::string xml_escape(const std::string& s);

// Whether values call for a log axis: all positive and spanning a factor of 20 or more.
bool wants_log_axis(const std::vector<double>& v);

}  // namespace lmpress
