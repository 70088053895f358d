// Helpers shared by tests: paths to ../shared, temp dirs, running the CLI.
#pragma once
#include <functional>
#include <initializer_list>
#include <string>
#include <vector>

#include "compress/calibration.h"
#include "core/tensor.h"
#include "kernels/kv_types.h"
#include "kernels/qdot.h"

namespace lmpress::test {

std::string shared_path(const std::string& rel);  // ../shared/<rel>
bool have_shared(const std::string& rel);
std::string temp_dir();                            // fresh, removed at exit
struct CliResult {
  int status;
  std::string out;  // stdout + stderr
};
// `env`: VAR=VALUE assignments put before the command.
CliResult run_cli(const std::string& args, const std::string& env = "");
// The words that start the CLI: $LMPRESS_CLI_EMULATOR's (split on spaces)
// when it is set, then LMPRESS_CLI_PATH. A cross-compiled build's tests run
// under an emulator (CMAKE_CROSSCOMPILING_EMULATOR), and CMake sets the
// variable to it for them so the CLI they start runs under it too.
std::vector<std::string> cli_command();
// Runs a shell command: its exit status and its stdout.
CliResult shell(const std::string& cmd);
// The llama.cpp peer's source checkout (scripts/llama-cpp-src.sh: models/
// vocabularies with their tokenizer tests, models/templates), or "" when it
// cannot be made (no npm, no registry).
std::string llama_cpp_checkout();
// Runs f expecting an lmpress::Error whose message contains msg.
void expect_error(const std::function<void()>& f, const std::string& msg);
// Runs the CLI expecting exit status 1 and `msg` in its output (no crash).
void expect_cli_error(const std::string& args, const std::string& msg);
// Perplexity through the CLI on the first 20 windows of 128 tokens of WikiText-2.
double cli_ppl(const std::string& model);
// Writes `text` to dir/calib.txt and returns options for 2 windows of 32
// tokens of it: calibration for the synthetic models.
CalibrationOptions tiny_calibration(const std::string& dir, const std::string& text);
// Runs body(cols) for each column count on each kernel target the machine
// has: AVX-VNNI, AVX512-VNNI, the VNNI kernels on emulated vpdpbusd, AVX2
// (qdot_pin_vnni) on x86-64; NEON with SDOT, then without (pin_cpu_isa) on
// aarch64; then the scalar references forced (qdot_use_simd off), tracing
// which in failures.
void for_kernel_targets(std::initializer_list<int64_t> cols, const std::function<void(int64_t)>& body);

// tests/data/ggml_blocks.gguf: 4x512 fixed values ("src"), ggml's quantization
// of them ("q.<TYPE>", no imatrix) and ggml's dequantization ("ref.<TYPE>").
// Σ dequantized weight row × dequantized int8 activations, in double, and
// Σ of the products' magnitudes (the scale for a tolerance).
struct DotCheck {
  double want, mag;
};
DotCheck dequantized_dot(DType t, const uint8_t* weights, ActFormat act, const uint8_t* activations, int64_t n);

class GgmlBlocks {
 public:
  GgmlBlocks();
  const Tensor& operator()(const std::string& name) const;
  bool has(const std::string& name) const;

 private:
  std::vector<Tensor> tensors_;
};

// A KV cache of `positions` rows in type t, `stride` values apart (a whole
// number of t's blocks), each row's first `used` values drawn from N(0, 1)
// and stored as the forward pass stores them; the padding after them is 0xff
// bytes (NaN scales and values), so that a kernel reading it gives NaN.
std::vector<uint8_t> random_cache(KvType t, int64_t positions, int64_t stride, int64_t used, unsigned seed);
// n values drawn from N(0, sigma²) with a seeded mt19937.
std::vector<float> gaussian(int64_t n, unsigned seed, float sigma = 1.0f);
// Row j's values [from, from + n) of such a cache, dequantized.
std::vector<float> cache_values(KvType t, const std::vector<uint8_t>& cache, int64_t stride, int64_t j, int64_t from,
                                int64_t n);

}  // namespace lmpress::test
