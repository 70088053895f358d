#include "serve/load_stats.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"

namespace lmpress::serve {

double percentile(std::vector<double> values, double q) {
  if (!(q >= 0 && q <= 100)) fail("percentile: q = {} is not in [0, 100]", q);
  if (values.empty()) return std::numeric_limits<double>::quiet_NaN();
  std::sort(values.begin(), values.end());
  // numpy's "linear" method: virtual index (n - 1) * q / 100, and its lerp,
  // which interpolates from the nearer end so that the result is exact there.
  const double h = double(values.size() - 1) * (q / 100.0);
  const size_t lo = std::min(size_t(std::floor(h)), values.size() - 1);
  const size_t hi = std::min(lo + 1, values.size() - 1);
  const double t = h - double(lo), a = values[lo], b = values[hi], d = b - a;
  return t >= 0.5 ? b - d * (1.0 - t) : a + d * t;
}

double mean(const std::vector<double>& values) {
  if (values.empty()) return std::numeric_limits<double>::quiet_NaN();
  double s = 0;
  for (double v : values) s += v;
  return s / double(values.size());
}

Summary summarize(const std::vector<double>& values) {
  return {percentile(values, 50), percentile(values, 95), percentile(values, 99), mean(values)};
}

void SseParser::feed(std::string_view bytes, std::vector<SseEvent>& out) {
  for (char c : bytes) {
    if (done_) return;
    if (c == '\n' && after_cr_) {  // the second half of a "\r\n" split across feeds or not
      after_cr_ = false;
      continue;
    }
    after_cr_ = c == '\r';
    if (c == '\n' || c == '\r') {
      line(partial_, out);
      partial_.clear();
    } else {
      partial_ += c;
    }
  }
}

void SseParser::finish(std::vector<SseEvent>& out) {
  if (!partial_.empty()) line(partial_, out);
  partial_.clear();
  dispatch(out);
}

void SseParser::line(std::string_view l, std::vector<SseEvent>& out) {
  if (done_) return;
  if (l.empty()) {
    dispatch(out);
    return;
  }
  if (l.front() == ':') return;  // comment (a keep-alive)
  const size_t colon = l.find(':');
  std::string_view field = l.substr(0, colon), value;
  if (colon != std::string_view::npos) {
    value = l.substr(colon + 1);
    if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  }
  if (field == "event" || field == "id" || field == "retry") return;
  if (has_data_) {
    pending_.data += '\n';
    if (pending_.field != "error") pending_.field = std::string(field);
  } else {
    pending_.field = std::string(field);
  }
  pending_.data.append(value);
  has_data_ = true;
}

void SseParser::dispatch(std::vector<SseEvent>& out) {
  if (!has_data_) return;
  has_data_ = false;
  if (pending_.field == "data" && pending_.data == "[DONE]") {
    done_ = true;
  } else {
    out.push_back(std::move(pending_));
  }
  pending_ = SseEvent{};
}

}  // namespace lmpress::serve
