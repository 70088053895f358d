// The serving engine: a Scheduler over a BatchEngine and a PagedKvCache,
// stepped by the thread that calls run() (the one that loaded the model:
// OpenMP keeps one team of workers per thread that starts parallel regions,
// and a second team on the same cores makes libgomp stop spinning between
// regions, which cost a third of each step). HTTP handlers (any thread)
// submit requests with a sink and cancel them; the engine thread calls each
// sink with the request's events as the steps produce them, and counts what
// /metrics reports.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "runtime/scheduler.h"

namespace lmpress::serve {

struct EngineOptions {
  int64_t max_running = 4;     // --parallel
  int64_t kv_blocks = 0;       // 0: enough for max_running sequences of ctx_size
  double kv_memory = 0;        // bytes for the KV cache instead (pool + KIVI stages of max_running); 0: kv_blocks
  int64_t block_size = 16;     // rounded up to whole KIVI groups
  int64_t ctx_size = 0;        // 0: the model's, at most 4096
  int64_t batch_tokens = 512;  // tokens per step (chunked prefill)
  int64_t max_waiting = 256;   // queued requests beyond which submit refuses (503)
  KvCacheSpec kv = {};
  KvPolicy policy = {};               // --kv-policy: sink-window (a request may then run past ctx_size)
  const DraftSource* spec = nullptr;  // speculative decoding (--spec)
};

// The context of one request: --ctx-size, or the model's (at most 4096).
int64_t context_of(const Model& m, const EngineOptions& o);
// The pool's block size (o.block_size, rounded up to whole KIVI groups) and
// block count (--kv-blocks, --kv-memory, or enough for --parallel requests).
int64_t block_size_of(const EngineOptions& o);
int64_t blocks_of(const Model& m, const EngineOptions& o, int64_t ctx);

// Counters since start, and the state now (llama-server's /metrics names them).
struct EngineMetrics {
  int64_t prompt_tokens = 0, generated_tokens = 0;  // computed prompt positions, sampled tokens
  double prompt_seconds = 0, generated_seconds = 0;  // step time, shared out by tokens
  int64_t steps = 0, busy_sequences = 0;             // busy_sequences summed over steps
  int64_t requests_finished = 0, requests_cancelled = 0, preemptions = 0;
  int64_t running = 0, waiting = 0;
  // Blocks held by requests; blocks kept only for the prefix cache (free to take).
  int64_t kv_blocks_used = 0, kv_cached_blocks = 0, kv_blocks = 0, block_size = 0;
  double kv_bytes_per_token = 0;  // the cache's bytes per position (all layers, K + V), and the pool's
  uint64_t kv_pool_bytes = 0, kv_staged_bytes = 0;  // the pool; KIVI's f16 rows of open sequences
  int64_t prefix_query_tokens = 0, prefix_hit_tokens = 0;
  int64_t spec_passes = 0, spec_draft_tokens = 0, spec_accepted_tokens = 0;
};

class Engine {
 public:
  // Called on the engine thread, in order; the last call for a request has
  // finished != None. It must not block.
  using Sink = std::function<void(const StepEvent&)>;

  Engine(const Model& m, EngineOptions opt);
  ~Engine();  // unfinished requests get a Cancelled event

  // Steps the scheduler until stop().
  void run();
  void stop();

  // Queues `r` (its id is assigned here and returned). Throws QueueFull when
  // max_waiting requests wait already or the engine is stopping, and
  // lmpress::Error when the request cannot be served (empty prompt, over the
  // context).
  struct QueueFull : std::runtime_error {
    using std::runtime_error::runtime_error;
  };
  int64_t submit(Request r, Sink sink);
  // Ends the request at the next step, giving its blocks back; its sink gets
  // no further events. Unknown or finished ids are ignored.
  void cancel(int64_t id);
  // Refuses new requests, waits up to `seconds` for the running and waiting
  // ones to finish, then cancels the rest (their sinks get Cancelled).
  void drain(double seconds);

  EngineMetrics metrics() const;
  int64_t ctx_size() const { return ctx_; }
  const Model& model() const { return m_; }

 private:

  const Model& m_;
  EngineOptions opt_;
  int64_t ctx_;
  PagedKvCache cache_;
  BatchEngine batch_;
  Scheduler sched_;

  mutable std::mutex mu_;  // guards everything below
  std::condition_variable wake_, idle_;
  std::vector<std::pair<Request, Sink>> inbox_;
  std::vector<int64_t> cancels_;
  std::unordered_map<int64_t, Sink> sinks_;  // submitted, not finished
  int64_t next_id_ = 1, queued_ = 0;
  bool stopping_ = false, accepting_ = true;
  EngineMetrics metrics_;
};

}  // namespace lmpress::serve
