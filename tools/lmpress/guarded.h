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

CLI::Option* add_path_option(CLI::App* cmd, const std::string& flags, std::string& var, const std::string& desc,
                             PathRole role, OutputKind kind = OutputKind::File);
CLI::Option* add_path_option(CLI::App* cmd, const std::string& flags, std::vector<std::string>& var,
                             const std::string& desc, PathRole role);
// A directory output of a kind other than a model's: an existing directory
// is replaced only when it holds `marker` (core/path_guard.h).
CLI::Option* add_directory_output(CLI::App* cmd, const std::string& flags, std::string& var, const std::string& desc,
                                  const std::string& marker);
// Paths computed from options when the command runs (task names looked up in
// a directory, an output prefix's files).
void add_derived_paths(CLI::App* cmd, const std::string& what, PathRole role,
                       std::function<std::vector<std::string>()> paths, OutputKind kind = OutputKind::File);

// The command's body: runs after the path check. The only way a command is
// given a body; main() refuses to start if a subcommand has none.
void on_run(CLI::App* cmd, std::function<void()> body);
void check_every_command_guarded(const CLI::App& app);

// The check itself, for tests and for the option-by-option fuzz test.
PathGuard command_guard(const CLI::App* cmd);

}  // namespace lmpress::cli
