// Outputs never overwrite inputs. A command names every input (models,
// texts, task files, imatrix, saved logits) and every output (files,
// directories, temp files) before it does any work; check() refuses an
// output that is an input — by (device, inode), so hard links and symlinks
// count, and by canonical path — or a directory output that holds one.
#pragma once
#include <string>
#include <vector>

namespace lmpress {

enum class OutputKind {
  File,       // an existing directory there is an error
  Directory,  // written as a temporary sibling and swapped in whole
  Either,     // decided later by the format; checked as what exists there now
};

inline constexpr const char* kModelDirMarker = "config.json";

class PathGuard {
 public:
  // `what` names the argument in messages ("-f", "--imatrix", "model").
  // A directory input covers every file below it.
  void input(const std::string& what, const std::string& path);
  // marker: the file that makes an existing directory replaceable (check_replaceable_dir).
  void output(const std::string& what, const std::string& path, OutputKind kind = OutputKind::File,
              const std::string& marker = kModelDirMarker);
  // Throws Error naming both arguments and paths.
  void check() const;

 private:
  struct Entry {
    std::string what, path;
    OutputKind kind = OutputKind::File;
    std::string marker = kModelDirMarker;
  };
  std::vector<Entry> inputs_, outputs_;
};

// A directory that a Directory output may replace: missing, empty, or a
// directory of the kind being written (holding `marker`: config.json for a
// model, adapter_config.json for a PEFT adapter, state.json for a training
// checkpoint) with no subdirectories. Anything else is a user's folder (or
// another kind of lmpress output) that must not be deleted.
void check_replaceable_dir(const std::string& what, const std::string& dir, const std::string& marker = kModelDirMarker);

}  // namespace lmpress
