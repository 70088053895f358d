// What the C API's files share: the handles' definitions and the guard that
// turns every exception into a status and a thread-local message.
#pragma once
#include <lmpress.h>

#include <nlohmann/json.hpp>

#include <memory>
#include <new>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/progress.h"
#include "kernels/kv_types.h"
#include "model/kv_policy.h"
#include "model/model.h"
#include "runtime/kv_cache.h"
#include "runtime/sampler.h"

struct lmpress_model {
  std::unique_ptr<lmpress::Model> m;
};

namespace lmpress::api {

// A failure the caller caused through the API itself (a NULL handle, a
// parameter out of range): LMPRESS_ERR_INVALID_ARGUMENT.
class InvalidArgument : public Error {
 public:
  using Error::Error;
};

template <typename... Args>
[[noreturn]] void invalid(fmt::format_string<Args...> f, Args&&... args) {
  throw InvalidArgument(fmt::format(f, std::forward<Args>(args)...));
}

// Fails when p is NULL, naming the function and the argument.
inline void need(const void* p, const char* fn, const char* arg) {
  if (!p) invalid("{}: {} is NULL", fn, arg);
}

void set_error(std::string msg);
// What lmpress_last_report() returns until the thread's next report.
void set_report(const nlohmann::ordered_json& report);

// An array of n C strings (NULL with n 0: none); `what` names it in errors.
std::vector<std::string> strings(const char* const* v, size_t n, const char* fn, const char* what);

// lmpress_set_threads' count, applied on the calling thread by every call that
// computes: OpenMP keeps the count per thread, so a count set on one thread
// would not reach calls made from another.
void apply_threads();

// Runs f, returning LMPRESS_OK or the status of what it threw (the message
// kept for lmpress_last_error()). Nothing escapes.
template <class F>
lmpress_status guarded(F&& f) noexcept {
  try {
    f();
    return LMPRESS_OK;
  } catch (const InvalidArgument& e) {
    set_error(e.what());
    return LMPRESS_ERR_INVALID_ARGUMENT;
  } catch (const Cancelled& e) {
    set_error(e.what());
    return LMPRESS_ERR_CANCELLED;
  } catch (const Error& e) {
    set_error(e.what());
    return LMPRESS_ERR_FAILED;
  } catch (const std::bad_alloc&) {
    set_error("out of memory");
    return LMPRESS_ERR_OUT_OF_MEMORY;
  } catch (const std::exception& e) {
    set_error(std::string("internal error: ") + e.what());
    return LMPRESS_ERR_INTERNAL;
  } catch (...) {
    set_error("internal error: an unknown exception");
    return LMPRESS_ERR_INTERNAL;
  }
}

// Copies `s` into buf[0..capacity) with a NUL; *n gets its length.
lmpress_status copy_out(const std::string& s, char* buf, size_t capacity, size_t* n, const char* fn);

// The cache options of the command line from their C form.
KvCacheSpec cache_spec(const lmpress_cache_params& p, const ModelConfig& cfg);
KvPolicy cache_policy(const lmpress_cache_params& p);
SamplerOptions sampler_options(const lmpress_sampler_params& p);

// The first checks of every *_create: out cleared, then the model.
template <class T>
void begin_create(T** out, const lmpress_model* model, const char* fn) {
  need(out, fn, "out");
  *out = nullptr;
  need(model, fn, "model");
}

// v, or an InvalidArgument naming the function and the parameter when outside [lo, hi].
int64_t in_range(int64_t v, int64_t lo, int64_t hi, const char* fn, const char* what);

// The paged KV cache of a batch or an engine: n_ctx positions in all (0: 4 × the
// model's context) in blocks of block_size, the cache types and eviction policy
// of `c` (a policy checked against steps of up to max_tokens).
std::unique_ptr<PagedKvCache> paged_cache(const Model& m, int64_t n_ctx, int64_t block_size,
                                          const lmpress_cache_params& c, int64_t max_tokens, const char* fn);

// A progress callback as the library's sink (empty when cb is NULL).
ProgressSink progress_sink(lmpress_progress_callback cb, void* user);

}  // namespace lmpress::api
