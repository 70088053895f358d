// Speed measurement as llama-bench does it: a prompt-processing test (n_prompt
// random tokens through the model in batches) and a generation test (n_gen
// tokens decoded one at a time), each from a cache holding n_depth positions
// (llama-bench's -d; 0: empty), repeated after a warm-up run, reported as
// tokens/s mean ± standard deviation. Plus the machine's memory bandwidth
// (STREAM triad), which bounds decoding speed.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/attention.h"
#include "model/model.h"

namespace lmpress {

struct SpeedTest {
  int64_t n_prompt = 0, n_gen = 0;  // one of them is 0, as in llama-bench
  int64_t n_depth = 0;              // positions in the cache before the timed tokens
  std::vector<double> samples_ns;   // one per repetition
  // The last token's logits of the last repetition: each eval computes them,
  // as llama-bench's decode does, so the output matrix is timed too.
  std::vector<float> last_logits;

  double tokens() const { return double(n_prompt + n_gen); }
  double avg_ns() const;
  double stddev_ns() const;
  std::vector<double> samples_ts() const;  // tokens/s per repetition
  double avg_ts() const;
  double stddev_ts() const;
  std::string name() const;  // "pp512", "tg128", "tg128 @ d4096" (llama-bench's names)
};

struct SpeedOptions {
  std::vector<int64_t> n_prompt{512};
  std::vector<int64_t> n_gen{128};
  std::vector<int64_t> n_depth{0};
  int reps = 5;
  int64_t n_batch = 512;
  KvCacheSpec kv = {};
  uint32_t seed = 1;
};

// Mean and sample standard deviation (0 for fewer than 2 values).
double mean_of(const std::vector<double>& v);
double stddev_of(const std::vector<double>& v);

// Runs every pp and tg test on m (each with its own fresh cache).
std::vector<SpeedTest> run_speed_tests(const Model& m, const SpeedOptions& o);

struct Bandwidth {
  double bytes_per_s = 0;  // best of the repetitions
  uint64_t array_bytes = 0;
};
// STREAM triad a[i] = b[i] + s·c[i] over three arrays far larger than the
// caches, with the current OpenMP thread count; counts 3 × 4 bytes per element
// (STREAM's convention: two reads and a write).
Bandwidth measure_triad_bandwidth(uint64_t array_bytes = 64ull << 20, int reps = 8);

// Bytes a decoding step reads: every weight except the embedding table (one
// row), of a mixture of experts' experts the share a token uses (model/cost.h).
uint64_t bytes_per_token(const Model& m);

}  // namespace lmpress
