// Progress for long work: a single updating line on a TTY (stderr), nothing
// otherwise, so logs and pipes stay clean.
#pragma once
#include <chrono>
#include <cstdint>
#include <string>

namespace lmpress {

class Progress {
 public:
  Progress(std::string label, uint64_t total);
  ~Progress();
  void update(uint64_t done);
  void finish();
  static bool enabled();

 private:
  std::string label_;
  uint64_t total_;
  bool active_;
  std::chrono::steady_clock::time_point start_, last_;
};

}  // namespace lmpress
