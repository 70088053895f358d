// Layer-by-layer compression holds one block at a time: the peak RSS of
// `quantize --type int4-g128 --method gptq` and `prune --method sparsegpt`
// on a synthetic model whose blocks dominate its size stays under
//   1.5 × the largest block's f32 size + the calibration state
//   + the program's own peak on a tiny model,
// the calibration state being the windows' activations, one block's Hessians
// (and channel sums) and the solver's working copy of the largest Hessian.
// The peak is measured from outside (wait4's ru_maxrss), the bound computed
// here from the model's shape, so neither depends on what the program reports.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "synthetic_model.h"
#include "test_util.h"

namespace lmpress {
namespace {

struct Measured {
  int status = -1;
  std::string out;  // stdout + stderr
  double peak_mib = 0;
};

// Runs the CLI with `args` as a child process; its peak RSS from wait4.
Measured run_measured(const std::vector<std::string>& args, const std::string& dir) {
  const std::string log = dir + "/child.log";
  std::vector<std::string> argv_s = test::cli_command();  // through $LMPRESS_CLI_EMULATOR when cross-built
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  Measured m;
  const pid_t pid = fork();
  if (pid < 0) return m;
  if (pid == 0) {
    const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) _exit(127);
    dup2(fd, 1);
    dup2(fd, 2);
    setenv("LMPRESS_NO_PROGRESS", "1", 1);
    execvp(argv[0], argv.data());
    _exit(127);
  }
  int st = 0;
  rusage ru{};
  if (wait4(pid, &st, 0, &ru) != pid) return m;
  m.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  m.peak_mib = double(ru.ru_maxrss) / 1024.0;
  std::ifstream in(log);
  std::stringstream ss;
  ss << in.rdbuf();
  m.out = ss.str();
  return m;
}

constexpr double kMiB = 1024.0 * 1024.0;

// What the bound charges for one block of `s`, in MiB.
struct Bound {
  double block_f32 = 0, activations = 0, statistics = 0;
};

Bound bound_for(const test::SyntheticSpec& s, int64_t windows, int64_t ctx, bool channel_sums) {
  const double D = double(s.dim), hd = D / double(s.n_heads), qd = double(s.n_heads) * hd,
               kvd = double(s.n_kv_heads) * hd, F = double(s.ffn);
  Bound b;
  b.block_f32 = 4.0 * (qd * D + 2 * kvd * D + D * qd + 3 * F * D + 2 * D) / kMiB;
  // The windows' hidden states, one window's copy, one window's block buffers and its K/V.
  const double T = double(ctx);
  b.activations = (4.0 * (double(windows) * T * D + T * D + T * (2 * D + 2 * qd + 2 * kvd + 2 * F)) + 2 * 2 * T * kvd) / kMiB;
  // Hessians of the four input sites (q/k/v, o, gate/up, down), f32; GPTQ's
  // per-channel |x| sums in double; the solver's double copy and f32 inverse
  // factor of the largest.
  const double widest = std::max({D, qd, F});
  b.statistics = (4.0 * (D * D + qd * qd + D * D + F * F) + (channel_sums ? 8.0 * (D + qd + D + F) : 0.0) +
                  12.0 * widest * widest) /
                 kMiB;
  return b;
}

TEST(PeakMemoryCli, QuantizeAndPruneHoldOneBlock) {
  // Under an emulator the peak RSS is the emulator's (its translation cache
  // on top of the program's), and GPTQ on these blocks runs past 20 minutes:
  // the bound is a property of the algorithm, checked on native builds.
  if (std::getenv("LMPRESS_CLI_EMULATOR")) GTEST_SKIP() << "peak RSS is measured natively, not under an emulator";
  const std::string d = test::temp_dir();
  // Blocks of 5.5 M weights (22 MiB as f32), several times the program's own
  // footprint, 8 of them: anything kept per block shows.
  test::SyntheticSpec big;
  big.dim = 1024, big.ffn = 1024, big.n_heads = 16, big.n_kv_heads = 4, big.n_layers = 8, big.ctx = 64;
  test::SyntheticSpec tiny;
  tiny.dim = 128, tiny.ffn = 128, tiny.n_heads = 4, tiny.n_kv_heads = 2, tiny.n_layers = 1, tiny.ctx = 64;
  for (const auto& [name, spec] : {std::pair{"big", big}, std::pair{"tiny", tiny}}) {
    std::filesystem::create_directories(d + "/" + name);
    test::write_synthetic_hf(d + "/" + name, spec);
  }
  std::string text;
  for (int i = 0; i < 20; i++) text += "the kernel schedules the threads that the model runs on; ";
  const CalibrationOptions co = test::tiny_calibration(d, text);
  // One thread: the peak does not depend on it, and the test shares the machine.
  const std::vector<std::string> calib = {"--calib", co.file, "--calib-samples", std::to_string(co.samples),
                                          "--calib-ctx", std::to_string(co.ctx), "-t", "1"};
  struct Case {
    std::string what;
    std::vector<std::string> args;  // before the model and output
    std::string out_suffix;
    bool channel_sums;
  };
  const std::vector<Case> cases = {
      {"quantize int4-g128 gptq", {"quantize"}, "-int4", true},
      {"prune sparsegpt", {"prune"}, "-pruned.gguf", false},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    auto args_for = [&](const std::string& model) {
      std::vector<std::string> a = c.args;
      a.push_back(d + "/" + model);
      a.push_back(d + "/" + model + c.out_suffix);
      if (c.args[0] == "quantize") a.insert(a.end(), {"--type", "int4-g128", "--method", "gptq"});
      else a.insert(a.end(), {"--method", "sparsegpt", "--sparsity", "0.5"});
      a.insert(a.end(), calib.begin(), calib.end());
      return a;
    };
    const Measured base = run_measured(args_for("tiny"), d);
    ASSERT_EQ(base.status, 0) << base.out;
    const Measured run = run_measured(args_for("big"), d);
    ASSERT_EQ(run.status, 0) << run.out;
    const Bound b = bound_for(big, co.samples, co.ctx, c.channel_sums);
    const double bound = 1.5 * b.block_f32 + b.activations + b.statistics + base.peak_mib;
    std::printf("%s: peak RSS %.1f MiB; bound %.1f MiB = 1.5 x block %.1f + activations %.1f + statistics %.1f + "
                "tiny model's peak %.1f\n",
                c.what.c_str(), run.peak_mib, bound, b.block_f32, b.activations, b.statistics, base.peak_mib);
    EXPECT_LT(run.peak_mib, bound) << "8 blocks of " << b.block_f32 << " MiB as f32";
    // The program's own line names the same peak.
    EXPECT_NE(run.out.find("peak RSS"), std::string::npos) << run.out;
  }
}

}  // namespace
}  // namespace lmpress
