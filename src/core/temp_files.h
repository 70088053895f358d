// Temporary outputs ("<path>.tmp.<pid>" files and directories) are removed
// when SIGINT, SIGTERM or SIGHUP ends the process, as they are when an error
// unwinds: an interrupted run leaves neither a partial model nor a stray
// temp file behind.
#pragma once
#include <string>

namespace lmpress {

// Installs the handlers (once; later calls do nothing). The handler removes
// every registered path, then ends the process with the same signal.
void install_temp_cleanup();

// Registers `path` for removal on a signal while the object lives. A
// directory must be flat (files only), as every directory lmpress writes is.
class TempPath {
 public:
  TempPath(const std::string& path, bool is_dir);
  ~TempPath();
  TempPath(const TempPath&) = delete;
  TempPath& operator=(const TempPath&) = delete;

 private:
  int slot_ = -1;
};

}  // namespace lmpress
