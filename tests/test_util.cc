#include "test_util.h"

#include "core/cpu_isa.h"
#include "core/error.h"
#include "kernels/qdot.h"
#include "model/forward.h"

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cmath>
#include <random>
#include <fstream>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <stdexcept>
#include <vector>

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "io/gguf.h"

namespace lmpress::test {
namespace fs = std::filesystem;

std::string shared_path(const std::string& rel) { return std::string(LMPRESS_SHARED_DIR) + "/" + rel; }
bool have_shared(const std::string& rel) { return fs::exists(shared_path(rel)); }

namespace {
struct TempDirs {
  std::vector<std::string> dirs;
  ~TempDirs() {
    for (auto& d : dirs) {
      std::error_code ec;
      fs::remove_all(d, ec);
    }
  }
};
TempDirs g_temp;
}  // namespace

std::string temp_dir() {
  std::string tmpl = (fs::temp_directory_path() / "lmpress-test-XXXXXX").string();
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back(0);
  if (!mkdtemp(buf.data())) std::abort();
  g_temp.dirs.emplace_back(buf.data());
  return g_temp.dirs.back();
}

std::vector<std::string> cli_command() {
  std::vector<std::string> words;
  if (const char* emulator = std::getenv("LMPRESS_CLI_EMULATOR")) {
    std::istringstream in(emulator);
    for (std::string w; in >> w;) words.push_back(w);
  }
  words.push_back(LMPRESS_CLI_PATH);
  return words;
}

CliResult run_cli(const std::string& args, const std::string& env) {
  std::string cli;
  for (const auto& w : cli_command()) cli += w + " ";
  return shell("LMPRESS_NO_PROGRESS=1 " + env + " " + cli + args + " 2>&1");
}

std::string llama_cpp_checkout() {
  const CliResult r = shell("bash " LMPRESS_SOURCE_DIR "/scripts/llama-cpp-src.sh 2>/dev/null");
  const std::string dir = r.out.substr(0, r.out.find('\n'));
  return r.status == 0 && !dir.empty() && std::filesystem::is_directory(dir + "/models") ? dir : "";
}

CliResult shell(const std::string& cmd) {
  FILE* p = popen(cmd.c_str(), "r");
  CliResult r{-1, ""};
  if (!p) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  int st = pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return r;
}

void expect_error(const std::function<void()>& f, const std::string& msg) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one containing: " << msg;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(msg), std::string::npos) << e.what();
  }
}

void expect_cli_error(const std::string& args, const std::string& msg) {
  auto r = run_cli(args);
  EXPECT_EQ(r.status, 1) << args << "\n" << r.out;
  EXPECT_NE(r.out.find(msg), std::string::npos) << args << "\nwanted: " << msg << "\ngot: " << r.out;
  EXPECT_EQ(r.out.find("Segmentation"), std::string::npos);
}

double cli_ppl(const std::string& model) {
  auto r = run_cli("perplexity " + model + " -f " + shared_path("data/wikitext-2/wiki.test.raw") +
                   " --ctx 128 --chunks 20 --json");
  EXPECT_EQ(r.status, 0) << r.out;
  return r.status == 0 ? nlohmann::json::parse(r.out)["ppl"].get<double>() : 0.0;
}

DotCheck dequantized_dot(DType t, const uint8_t* weights, ActFormat act, const uint8_t* activations, int64_t n) {
  std::vector<float> dw(static_cast<size_t>(n)), dx(static_cast<size_t>(n));
  dequantize_row(t, weights, n, dw.data());
  if (act == ActFormat::Q8_0) {
    dequantize_row(DType::Q8_0, activations, n, dx.data());
  } else {
    const auto* b = reinterpret_cast<const BlockQ8_K*>(activations);
    for (int64_t i = 0; i < n; i++) dx[size_t(i)] = b[i / 256].d * float(b[i / 256].qs[i % 256]);
  }
  DotCheck c{0, 0};
  for (size_t i = 0; i < dw.size(); i++) c.want += double(dw[i]) * dx[i], c.mag += std::fabs(double(dw[i]) * dx[i]);
  return c;
}

GgmlBlocks::GgmlBlocks()
    : tensors_(GGUFFile::open(std::string(LMPRESS_SOURCE_DIR) + "/tests/data/ggml_blocks.gguf").tensors()) {}

const Tensor& GgmlBlocks::operator()(const std::string& name) const {
  for (const auto& t : tensors_)
    if (t.name == name) return t;
  throw std::runtime_error("ggml_blocks.gguf has no tensor " + name);
}

bool GgmlBlocks::has(const std::string& name) const {
  for (const auto& t : tensors_)
    if (t.name == name) return true;
  return false;
}

CalibrationOptions tiny_calibration(const std::string& dir, const std::string& text) {
  std::ofstream(dir + "/calib.txt") << text;
  CalibrationOptions co;
  co.file = dir + "/calib.txt";
  co.samples = 2;
  co.ctx = 32;
  return co;
}

void for_kernel_targets(std::initializer_list<int64_t> cols, const std::function<void(int64_t)>& body) {
  const auto run = [&] {
    for (int64_t c : cols) {
      SCOPED_TRACE("cols=" + std::to_string(c) + " " + qdot_target());
      body(c);
    }
  };
#if defined(__aarch64__)
  // Each NEON target the cap allows, best first, pinned as LMPRESS_ISA would
  // pin it; then the cap as it was.
  const std::string cap = cpu_isa_name();
  const CpuFeatures allowed = cpu_isa();
  for (const std::string name : {"neon-dotprod", "neon"}) {
    if (!qdot_simd_active() || !allowed.neon || (name == "neon-dotprod" && !allowed.dotprod)) continue;
    pin_cpu_isa(name);
    run();
  }
  pin_cpu_isa(cap);
#else
  // Each target the machine has, best first: the VNNI encodings, the VNNI
  // source on emulated vpdpbusd, AVX2, scalar.
  for (Vnni v : {Vnni::avx, Vnni::avx512, Vnni::emulated, Vnni::none}) {
    if (!qdot_simd_active() || !qdot_vnni_available(v)) continue;
    qdot_pin_vnni(v);
    run();
  }
  qdot_pin_vnni(std::nullopt);
#endif
  qdot_use_simd(false);
  run();
  qdot_use_simd(true);
}

std::vector<float> gaussian(int64_t n, unsigned seed, float sigma) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, sigma);
  std::vector<float> x(static_cast<size_t>(n));
  for (auto& v : x) v = nd(rng);
  return x;
}

std::vector<uint8_t> random_cache(KvType t, int64_t positions, int64_t stride, int64_t used, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd;
  const int64_t row = kv_row_bytes(t, stride);
  std::vector<uint8_t> c(size_t(positions * row), 0xff);
  std::vector<float> x(static_cast<size_t>(used));
  for (int64_t j = 0; j < positions; j++) {
    for (auto& v : x) v = nd(rng);
    store_cache_row(t, x.data(), used, c.data() + j * row);
  }
  return c;
}

std::vector<float> cache_values(KvType t, const std::vector<uint8_t>& cache, int64_t stride, int64_t j, int64_t from,
                                int64_t n) {
  std::vector<float> out(static_cast<size_t>(n));
  kv_row_to_f32(t, cache.data() + j * kv_row_bytes(t, stride) + kv_row_bytes(t, from), n, out.data());
  return out;
}

}  // namespace lmpress::test
