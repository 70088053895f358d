// Helpers shared by tests: paths to ../shared, temp dirs, running the CLI.
#pragma once
#include <string>

namespace lmpress::test {

std::string shared_path(const std::string& rel);  // ../shared/<rel>
bool have_shared(const std::string& rel);
std::string temp_dir();                            // fresh, removed at exit
struct CliResult {
  int status;
  std::string out;  // stdout + stderr
};
CliResult run_cli(const std::string& args);

}  // namespace lmpress::test
