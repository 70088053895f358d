// Progress for long work: a single updating line on a TTY (stderr), nothing
// otherwise, so logs and pipes stay clean.
#pragma once
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

namespace lmpress {

class Progress {
 public:
  Progress(std::string label, uint64_t total);
  ~Progress();
  // detail: shown after the count (finetune's loss and tokens/s).
  void update(uint64_t done, const std::string& detail = "");
  void finish();
  static bool enabled();

 private:
  void report(uint64_t done);

  std::string label_;
  uint64_t total_;
  bool active_;
  std::chrono::steady_clock::time_point start_, last_;
};

// A caller's view of progress (the C API's callbacks): while a sink is
// installed on a thread, every Progress made on that thread reports each
// update to it (besides the TTY line), and a sink that returns false cancels
// the work: the update throws Cancelled (core/error.h), so the work unwinds
// as from any error and writes no output.
using ProgressSink = std::function<bool(const std::string& stage, uint64_t done, uint64_t total)>;
class ScopedProgressSink {
 public:
  explicit ScopedProgressSink(ProgressSink sink);
  ~ScopedProgressSink();
  ScopedProgressSink(const ScopedProgressSink&) = delete;
  ScopedProgressSink& operator=(const ScopedProgressSink&) = delete;

 private:
  ProgressSink previous_;
};

}  // namespace lmpress
