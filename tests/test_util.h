// Helpers shared by tests: paths to ../shared, temp dirs, running the CLI.
#pragma once
#include <string>
#include <vector>

#include "core/tensor.h"

namespace lmpress::test {

std::string shared_path(const std::string& rel);  // ../shared/<rel>
bool have_shared(const std::string& rel);
std::string temp_dir();                            // fresh, removed at exit
struct CliResult {
  int status;
  std::string out;  // stdout + stderr
};
CliResult run_cli(const std::string& args);

// tests/data/ggml_blocks.gguf: 4x512 fixed values ("src"), ggml's quantization
// of them ("q.<TYPE>", no imatrix) and ggml's dequantization ("ref.<TYPE>").
class GgmlBlocks {
 public:
  GgmlBlocks();
  const Tensor& operator()(const std::string& name) const;

 private:
  std::vector<Tensor> tensors_;
};

}  // namespace lmpress::test
