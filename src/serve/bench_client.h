// The load generator behind `lmpress bench-serve`: a fixed number of
// streaming completion requests against an OpenAI-compatible server on this
// machine, a bounded number of them in flight, and the latencies a user of the
// server sees (time to first token, gaps between tokens, whole requests).
#pragma once
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "serve/load_stats.h"

namespace lmpress::serve {

constexpr int64_t kMaxBenchRequests = 100000;
constexpr int kMaxBenchConcurrency = 1024;

// A server on the loopback interface: http://127.0.0.1:PORT,
// http://localhost:PORT or http://[::1]:PORT, a trailing path ignored.
struct LoopbackUrl {
  std::string host;  // as the socket layer takes it: "127.0.0.1", "localhost", "::1"
  int port = 80;
};
// Throws lmpress::Error "bench-serve: URL ... is not loopback (...)" for any
// other host, and a message naming the URL for a malformed one.
LoopbackUrl parse_loopback_url(const std::string& url);

struct BenchOptions {
  std::string host = "127.0.0.1";
  int port = 8080;
  int concurrency = 1;      // client threads, each with its own connection
  int64_t requests = 1;     // in all
  int64_t prompt_len = 128;  // token ids per prompt
  int64_t max_tokens = 128;
  int64_t shared_prefix = 0;  // the first K ids of every prompt are the same
  uint64_t seed = 1;
  double timeout_s = 600;  // per request
  std::string model;       // empty: the first id of GET /v1/models, else "default"
  std::string api_key;     // sent as "Authorization: Bearer KEY" when set
  // Called after each request ends with the number ended so far (serialized).
  std::function<void(int64_t done)> on_request_done;
};

// The prompt of request `index`: `prompt_len` ids in [100, 1000), a pure
// function of (seed, index); its first `shared_prefix` ids do not depend on index.
std::vector<int32_t> bench_prompt(uint64_t seed, int64_t index, int64_t prompt_len, int64_t shared_prefix);

// The JSON body of one request (stream, ignore_eos, temperature 0, usage asked for).
nlohmann::ordered_json completion_request(const std::string& model, const std::vector<int32_t>& prompt,
                                          int64_t max_tokens);

// What one request measured.
struct RequestResult {
  bool ok = false;
  std::string error;          // why it failed
  double ttft_ms = -1;        // -1: no chunk with text
  double latency_ms = 0;      // sending to the end of the stream
  std::vector<double> itl_ms;  // gaps between successive chunks with text
  int64_t completion_tokens = 0;  // usage.completion_tokens, else the chunks with text
  int64_t content_chunks = 0;
};

// Parses a completion stream's events as they arrive, for one request.
class CompletionStream {
 public:
  // `t_ms`: the time the bytes arrived, in ms since the request was sent.
  void feed(std::string_view bytes, double t_ms);
  // The end of the response body: fills `r` (ok when [DONE] came and no error).
  void finish(double t_ms, RequestResult& r);

 private:
  void event(const SseEvent& e, double t_ms);
  SseParser parser_;
  std::vector<SseEvent> events_;
  std::string error_;
  double first_ms_ = -1, last_ms_ = -1;
  std::vector<double> itl_ms_;
  int64_t chunks_ = 0, usage_tokens_ = -1;
};

struct BenchReport {
  int64_t requests = 0, errors = 0;
  int concurrency = 0;
  int64_t prompt_len = 0, max_tokens = 0;
  std::string model;
  double duration_s = 0;
  int64_t prompt_tokens = 0, completion_tokens = 0;  // of the requests that succeeded
  double prompt_tokens_per_s = 0, gen_tokens_per_s = 0;
  Summary ttft_ms{}, itl_ms{}, latency_ms{};
  std::string first_error;
};

// Asks GET /v1/models for the first model id; "default" when that fails.
std::string first_model_id(const std::string& host, int port, const std::string& api_key, double timeout_s);

// Sends o.requests requests, at most o.concurrency at a time, and measures them.
// Failed requests (a status other than 200, a connection error, a stream
// without [DONE]) are counted and the run goes on.
BenchReport run_bench(const BenchOptions& o);

// The report as `bench-serve --json` prints it (NaN percentiles as null).
nlohmann::ordered_json to_json(const BenchReport& r);

}  // namespace lmpress::serve
