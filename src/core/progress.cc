#include "core/progress.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "core/error.h"

namespace lmpress {

namespace {
thread_local ProgressSink current_sink;
}  // namespace

ScopedProgressSink::ScopedProgressSink(ProgressSink s) : previous_(std::move(current_sink)) {
  current_sink = std::move(s);
}

ScopedProgressSink::~ScopedProgressSink() { current_sink = std::move(previous_); }

void Progress::report(uint64_t done) {
  if (current_sink && !current_sink(label_, done, total_)) throw Cancelled(label_ + ": cancelled by the caller");
}

bool Progress::enabled() {
  static const bool on = isatty(STDERR_FILENO) && !std::getenv("LMPRESS_NO_PROGRESS");
  return on;
}

Progress::Progress(std::string label, uint64_t total)
    : label_(std::move(label)), total_(total), active_(enabled()) {
  start_ = last_ = std::chrono::steady_clock::now();
  report(0);
}

Progress::~Progress() { finish(); }

void Progress::update(uint64_t done, const std::string& detail) {
  report(done);
  if (!active_) return;
  auto now = std::chrono::steady_clock::now();
  if (done < total_ && now - last_ < std::chrono::milliseconds(100)) return;
  last_ = now;
  double secs = std::chrono::duration<double>(now - start_).count();
  double frac = total_ ? double(done) / double(total_) : 1.0;
  double eta = frac > 0 ? secs / frac - secs : 0;
  const std::string middle = detail.empty() ? "" : ", " + detail + ",";
  std::fprintf(stderr, "\r%s: %llu/%llu (%.0f%%)%s %.1fs elapsed, %.1fs left   ", label_.c_str(),
               (unsigned long long)done, (unsigned long long)total_, frac * 100, middle.c_str(), secs, eta);
  std::fflush(stderr);
}

void Progress::finish() {
  if (!active_) return;
  std::fprintf(stderr, "\r\033[K");
  std::fflush(stderr);
  active_ = false;
}

}  // namespace lmpress
