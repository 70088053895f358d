// Every file a command reads or writes is declared with its option, and the
// command's body runs only after a PathGuard over all of them has passed: an
// output can never overwrite an input, whichever command or option names it.
#pragma once
#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

#include "core/path_guard.h"

namespace lmpress::cli {

enum class PathRole {
  Input,   // a file read whole (text, task file, imatrix, saved logits)
  Model,   // a model argument: every file load_model reads for it
  Output,  // a file or directory the command writes
};

// marker: for a directory output, the file that makes an existing directory
// replaceable (core/path_guard.h: a model's config.json by default).
CLI::Option* add_path_option(CLI::App* cmd, const std::string& flags, std::string& var, const std::string& desc,
                             PathRole role, OutputKind kind = OutputKind::File,
                             const std::string& marker = kModelDirMarker);
CLI::Option* add_path_option(CLI::App* cmd, const std::string& flags, std::vector<std::string>& var,
                             const std::string& desc, PathRole role);
// Paths computed from options when the command runs (task names looked up in
// a directory, an output prefix's files).
void add_derived_paths(CLI::App* cmd, const std::string& what, PathRole role,
                       std::function<std::vector<std::string>()> paths, OutputKind kind = OutputKind::File,
                       const std::string& marker = kModelDirMarker);

// The command's body: runs after the path check. The only way a command is
// given a body; main() refuses to start if a subcommand has none.
void on_run(CLI::App* cmd, std::function<void()> body);
void check_every_command_guarded(const CLI::App& app);

// The check itself, for tests and for the option-by-option fuzz test.
PathGuard command_guard(const CLI::App* cmd);

}  // namespace lmpress::cli
