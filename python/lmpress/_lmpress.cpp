// lmpress._lmpress: the Python bindings of liblmpress, over its C API
// (include/lmpress.h) and nothing else. The Pythonic layer is lmpress/__init__.py;
// this module keeps to handles, buffers, threads and the GIL:
// - every call into the library that computes runs on the calling thread with
//   the GIL released (no thread of the module's own: libgomp's pools are per
//   thread); the library applies set_threads()'s count on every thread;
// - a failing status raises lmpress.Error (or the subclass for its code) with
//   lmpress_last_error()'s message, read on the thread that failed;
// - Python callbacks (progress) run with the GIL taken again; an exception in
//   one cancels the call and is raised in place of lmpress.Cancelled; Ctrl-C
//   (polled from the C callbacks, Interrupt) stops long calls likewise;
// - a streaming generation is stepped by its iterator (lmpress_generation_next
//   per token, GIL released), checking for signals between tokens.
#include <lmpress.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace py = pybind11;

namespace {

// ------------------------------------------------------------------ errors

// A failed status on its way to Python (translated in PYBIND11_MODULE).
class StatusError : public std::exception {
 public:
  StatusError(lmpress_status status, std::string message) : status(status), message(std::move(message)) {}
  const char* what() const noexcept override { return message.c_str(); }
  lmpress_status status;
  std::string message;
};

// The message of this thread's last failure, or the status's name when the
// library left none.
[[noreturn]] void throw_status(lmpress_status s) {
  std::string msg = lmpress_last_error();
  if (msg.empty()) msg = lmpress_status_name(s);
  throw StatusError(s, std::move(msg));
}

inline void check(lmpress_status s) {
  if (s != LMPRESS_OK) throw_status(s);
}

[[noreturn]] void invalid(std::string msg) { throw StatusError(LMPRESS_ERR_INVALID_ARGUMENT, std::move(msg)); }

// Exception classes of lmpress._errors (set at import).
py::handle g_error_classes[7];

// ----------------------------------------------------------------- threads

// The count set_threads() was given (-1: never set, the library's default),
// for get_threads(): the library applies it on every thread that computes.
std::atomic<int> g_threads{-1};

// Where the library computes: on the calling thread, with the GIL released,
// for every call (a streaming generation's steps included); the module starts
// no thread. libgomp keeps a pool of worker threads for each thread that
// starts parallel regions, and once the pools together hold more threads than
// there are cores, every pool's workers sleep between regions instead of
// spinning: decoding then runs several times slower (measured: 4x on 2 cores
// with a second pool of 2). Computing on the caller's thread keeps to one pool
// in a program that calls lmpress from one thread, as most do.

// The interpreter's main thread, the only one that runs signal handlers.
unsigned long g_main_thread = 0;

// Ctrl-C during a C call made with the GIL released on this thread: the
// call's callbacks poll Python's signal handlers (on the main thread, at most
// every 50 ms, taking the GIL for it), and one that raises (KeyboardInterrupt)
// stops the call; the caller then raises its exception (rethrow_if_any), as it
// does a progress callback's.
class Interrupt {
 public:
  Interrupt() : main_(PyThread_get_thread_ident() == g_main_thread) {}

  // In a callback, with the GIL released: whether to stop the call.
  bool poll() {
    if (error_) return true;
    if (!main_) return false;
    const auto now = std::chrono::steady_clock::now();
    if (now < next_) return false;
    next_ = now + std::chrono::milliseconds(50);
    py::gil_scoped_acquire gil;
    return check_with_gil();
  }
  // In a callback, with the GIL held: runs pending signal handlers; true
  // (their exception kept) when one raised.
  bool check_with_gil() {
    if (error_) return true;
    if (PyErr_CheckSignals() == 0) return false;
    error_ = std::make_unique<py::error_already_set>();
    return true;
  }
  // With the GIL held: keeps the exception being handled (a callback's).
  void keep(py::error_already_set&& e) { error_ = std::make_unique<py::error_already_set>(std::move(e)); }
  // With the GIL held, after the call: raises the kept exception, if any.
  void rethrow_if_any() {
    if (error_) {
      py::error_already_set e = std::move(*error_);
      error_.reset();
      throw e;
    }
  }

 private:
  bool main_;
  std::chrono::steady_clock::time_point next_ = std::chrono::steady_clock::now() + std::chrono::milliseconds(50);
  std::unique_ptr<py::error_already_set> error_;
};

// A C call's outcome, read on the thread that made it.
struct Outcome {
  lmpress_status status = LMPRESS_OK;
  std::string error;
  void set(lmpress_status s) {
    status = s;
    if (s != LMPRESS_OK) {
      error = lmpress_last_error();
      if (error.empty()) error = lmpress_status_name(s);
    }
  }
  void check() const {
    if (status != LMPRESS_OK) throw StatusError(status, error);
  }
};

// --------------------------------------------------------------- callbacks

// The progress callback of a C call: stops it on Ctrl-C (Interrupt), and
// calls the Python callable, if any, with the GIL taken: None and true values
// continue, false values cancel, and an exception cancels and is kept to be
// raised by the caller (intr.rethrow_if_any).
struct ProgressState {
  py::object fn;
  Interrupt intr;

  static bool call(const char* stage, uint64_t done, uint64_t total, void* user) {
    auto* st = static_cast<ProgressState*>(user);
    if (!st->fn) return !st->intr.poll();
    py::gil_scoped_acquire gil;
    if (st->intr.check_with_gil()) return false;
    try {
      py::object r = st->fn(py::str(stage ? stage : ""), done, total);
      if (r.is_none()) return true;
      const int t = PyObject_IsTrue(r.ptr());
      if (t < 0) throw py::error_already_set();
      return t != 0;
    } catch (py::error_already_set& e) {
      st->intr.keep(std::move(e));
      return false;
    } catch (const std::exception& e) {
      PyErr_SetString(PyExc_RuntimeError, e.what());
      st->intr.keep(py::error_already_set());
      return false;
    }
  }
};

// Fills a C callback pair: always (Ctrl-C cancels), with the Python callable if any.
void set_progress(ProgressState& st, const py::object& fn, lmpress_progress_callback* cb, void** user) {
  if (!fn.is_none()) {
    if (!PyCallable_Check(fn.ptr())) throw py::type_error("progress must be callable(stage, done, total) or None");
    st.fn = fn;
  }
  *cb = &ProgressState::call;
  *user = &st;
}

// Runs call() (a C function given params p, whose progress / progress_user_data
// it fills from `progress`) with the GIL released; raises what the callback
// raised (or Ctrl-C), else the call's error.
template <class Params, class Call>
void call_with_progress(Params& p, const py::object& progress, Call&& call) {
  ProgressState st;
  set_progress(st, progress, &p.progress, &p.progress_user_data);
  Outcome out;
  {
    py::gil_scoped_release nogil;
    out.set(call());
  }
  st.intr.rethrow_if_any();  // first: a call the callback stopped failed because of it
  out.check();
}

// ---------------------------------------------------------------- options

std::optional<std::string> opt_str(const py::dict& d, const char* key) {
  if (!d.contains(key)) return std::nullopt;
  py::object v = d[key];
  if (v.is_none()) return std::nullopt;
  return v.cast<std::string>();
}

template <class T>
void opt_num(const py::dict& d, const char* key, T* out) {
  if (!d.contains(key)) return;
  py::object v = d[key];
  if (!v.is_none()) *out = v.cast<T>();
}

void check_keys(const py::dict& d, std::initializer_list<const char*> keys, const char* what) {
  for (auto item : d) {
    const std::string k = py::str(item.first);
    bool ok = false;
    for (const char* key : keys) ok = ok || k == key;
    if (!ok) throw py::type_error(std::string(what) + ": unknown option '" + k + "'");
  }
}

// KV-cache options as lmpress_cache_params, owning the strings it points to.
struct CacheOptions {
  std::optional<std::string> type_k, type_v, rotate, policy;
  int64_t kivi_group = -1, kivi_residual = -1;  // -1: the C default

  static CacheOptions from(const py::object& o) {
    CacheOptions c;
    if (o.is_none()) return c;
    py::dict d = o.cast<py::dict>();
    check_keys(d, {"type_k", "type_v", "rotate", "kivi_group", "kivi_residual", "policy"}, "cache");
    c.type_k = opt_str(d, "type_k");
    c.type_v = opt_str(d, "type_v");
    c.rotate = opt_str(d, "rotate");
    c.policy = opt_str(d, "policy");
    opt_num(d, "kivi_group", &c.kivi_group);
    opt_num(d, "kivi_residual", &c.kivi_residual);
    return c;
  }
  // Over `p` (the C defaults): valid while this object lives.
  void apply(lmpress_cache_params* p) const {
    if (type_k) p->type_k = type_k->c_str();
    if (type_v) p->type_v = type_v->c_str();
    if (rotate) p->rotate = rotate->c_str();
    if (policy) p->policy = policy->c_str();
    if (kivi_group >= 0) p->kivi_group = kivi_group;
    if (kivi_residual >= 0) p->kivi_residual = kivi_residual;
  }
};

lmpress_sampler_params sampler_params(const py::object& o) {
  lmpress_sampler_params p = lmpress_sampler_default_params();
  if (o.is_none()) return p;
  py::dict d = o.cast<py::dict>();
  check_keys(d,
             {"temperature", "top_k", "top_p", "min_p", "seed", "repeat_penalty", "frequency_penalty",
              "presence_penalty", "penalty_last_n"},
             "sampling");
  opt_num(d, "temperature", &p.temperature);
  opt_num(d, "top_k", &p.top_k);
  opt_num(d, "top_p", &p.top_p);
  opt_num(d, "min_p", &p.min_p);
  opt_num(d, "seed", &p.seed);
  opt_num(d, "repeat_penalty", &p.repeat_penalty);
  opt_num(d, "frequency_penalty", &p.frequency_penalty);
  opt_num(d, "presence_penalty", &p.presence_penalty);
  opt_num(d, "penalty_last_n", &p.penalty_last_n);
  return p;
}

py::dict sampler_dict(const lmpress_sampler_params& p) {
  py::dict d;
  d["temperature"] = p.temperature;
  d["top_k"] = p.top_k;
  d["top_p"] = p.top_p;
  d["min_p"] = p.min_p;
  d["seed"] = p.seed;
  d["repeat_penalty"] = p.repeat_penalty;
  d["frequency_penalty"] = p.frequency_penalty;
  d["presence_penalty"] = p.presence_penalty;
  d["penalty_last_n"] = p.penalty_last_n;
  return d;
}

py::dict cache_dict(const lmpress_cache_params& c) {
  auto s = [](const char* v) -> py::object { return v ? py::object(py::str(v)) : py::object(py::none()); };
  py::dict d;
  d["type_k"] = s(c.type_k);
  d["type_v"] = s(c.type_v);
  d["rotate"] = s(c.rotate);
  d["kivi_group"] = c.kivi_group;
  d["kivi_residual"] = c.kivi_residual;
  d["policy"] = s(c.policy);
  return d;
}

// The C API's defaults, for the Python layer's signatures (and a test that
// they agree).
py::dict defaults() {
  py::dict d;
  const lmpress_model_params mp = lmpress_model_default_params();
  d["model"] = py::dict(py::arg("repack") = mp.repack);
  const lmpress_context_params cp = lmpress_context_default_params();
  d["context"] = py::dict(py::arg("n_ctx") = cp.n_ctx, py::arg("n_batch") = cp.n_batch);
  d["cache"] = cache_dict(cp.cache);
  d["sampling"] = sampler_dict(lmpress_sampler_default_params());
  const lmpress_generate_params gp = lmpress_generate_default_params();
  d["generate"] =
      py::dict(py::arg("n_predict") = gp.n_predict, py::arg("n_ctx") = gp.n_ctx, py::arg("ignore_eos") = gp.ignore_eos);
  const lmpress_perplexity_params pp = lmpress_perplexity_default_params();
  d["perplexity"] = py::dict(py::arg("n_ctx") = pp.n_ctx, py::arg("n_chunks") = pp.n_chunks);
  const lmpress_quantize_params qp = lmpress_quantize_default_params();
  d["quantize"] = py::dict(py::arg("calib_samples") = qp.calib_samples, py::arg("calib_ctx") = qp.calib_ctx,
                           py::arg("damp") = qp.damp, py::arg("act_order") = qp.act_order);
  const lmpress_prune_params rp = lmpress_prune_default_params();
  d["prune"] = py::dict(py::arg("sparsity") = rp.sparsity, py::arg("calib_samples") = rp.calib_samples,
                        py::arg("calib_ctx") = rp.calib_ctx, py::arg("damp") = rp.damp);
  const lmpress_kld_params kp = lmpress_kld_default_params();
  d["kld"] = py::dict(py::arg("n_ctx") = kp.n_ctx, py::arg("n_chunks") = kp.n_chunks,
                      py::arg("cache") = cache_dict(kp.cache), py::arg("base_cache") = cache_dict(kp.base_cache));
  return d;
}

using TokenArray = py::array_t<int32_t, py::array::c_style | py::array::forcecast>;
using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;

std::vector<int32_t> to_vector(const TokenArray& a) {
  if (a.ndim() != 1) invalid("tokens: a 1-D sequence of token ids, got " + std::to_string(a.ndim()) + " dimensions");
  return std::vector<int32_t>(a.data(), a.data() + a.size());
}

py::str decode_utf8(const char* data, size_t len) {
  PyObject* s = PyUnicode_DecodeUTF8(data, Py_ssize_t(len), "replace");
  if (!s) throw py::error_already_set();
  return py::reinterpret_steal<py::str>(s);
}

const char* stop_reason_name(lmpress_stop_reason r) {
  switch (r) {
    case LMPRESS_STOP_EOS: return "eos";
    case LMPRESS_STOP_LENGTH: return "length";
    case LMPRESS_STOP_CONTEXT: return "context";
    case LMPRESS_STOP_CALLER: return "caller";
  }
  return "unknown";
}

py::dict result_dict(const lmpress_generate_result& r) {
  py::dict d;
  d["n_prompt"] = r.n_prompt;
  d["n_generated"] = r.n_generated;
  d["stop_reason"] = stop_reason_name(r.stop_reason);
  d["prompt_seconds"] = r.prompt_seconds;
  d["gen_seconds"] = r.gen_seconds;
  return d;
}

// ------------------------------------------------------------------ model

using ModelPtr = std::shared_ptr<lmpress_model>;

class Model {
 public:
  explicit Model(ModelPtr m) : m_(std::move(m)) {
    lmpress_model_info info;
    check(lmpress_model_get_info(m_.get(), &info));
    n_vocab_ = info.n_vocab;
  }

  static Model load(const std::string& path, const std::optional<std::string>& tokenizer_path, bool repack,
                    const py::object& progress) {
    lmpress_model_params p = lmpress_model_default_params();
    if (tokenizer_path) p.tokenizer_path = tokenizer_path->c_str();
    p.repack = repack;
    lmpress_model* raw = nullptr;
    call_with_progress(p, progress, [&] { return lmpress_model_load(path.c_str(), &p, &raw); });
    return Model(ModelPtr(raw, lmpress_model_free));
  }

  const ModelPtr& ptr() const {
    if (!m_) invalid("the model is closed");
    return m_;
  }
  lmpress_model* get() const { return ptr().get(); }
  int64_t n_vocab() const { return n_vocab_; }
  bool closed() const { return !m_; }
  // Contexts and generations hold the model too: it is freed with the last.
  void close() { m_.reset(); }

  py::dict info() const {
    lmpress_model_info i;
    check(lmpress_model_get_info(get(), &i));
    py::dict d;
    d["arch"] = i.arch ? i.arch : "";
    d["format"] = i.format ? i.format : "";
    d["n_vocab"] = i.n_vocab;
    d["n_embd"] = i.n_embd;
    d["n_layer"] = i.n_layer;
    d["n_head"] = i.n_head;
    d["n_head_kv"] = i.n_head_kv;
    d["head_dim"] = i.head_dim;
    d["n_ff"] = i.n_ff;
    d["n_ctx_train"] = i.n_ctx_train;
    d["n_params"] = i.n_params;
    d["n_bytes"] = i.n_bytes;
    d["bos"] = i.token_bos;
    d["eos"] = i.token_eos;
    d["add_bos"] = i.add_bos;
    return d;
  }

  std::vector<int32_t> tokenize(const std::string& text, bool add_special, bool parse_special) const {
    const ModelPtr keep = ptr();  // a close() from another thread meanwhile frees nothing
    lmpress_model* m = keep.get();
    std::vector<int32_t> out;
    py::gil_scoped_release nogil;
    // A token is at least one byte, save the specials added.
    out.resize(text.size() + 8);
    size_t n = 0;
    lmpress_status s =
        lmpress_tokenize(m, text.data(), text.size(), add_special, parse_special, out.data(), out.size(), &n);
    if (s == LMPRESS_ERR_BUFFER_TOO_SMALL) {
      out.resize(n);
      s = lmpress_tokenize(m, text.data(), text.size(), add_special, parse_special, out.data(), out.size(), &n);
    }
    check(s);
    out.resize(n);
    return out;
  }

  py::bytes detokenize(const TokenArray& tokens, bool special) const {
    const ModelPtr keep = ptr();
    lmpress_model* m = keep.get();
    const std::vector<int32_t> t = to_vector(tokens);
    std::string buf;
    {
      py::gil_scoped_release nogil;
      buf.resize(t.size() * 16 + 64);
      size_t n = 0;
      lmpress_status s = lmpress_detokenize(m, t.data(), t.size(), special, buf.data(), buf.size(), &n);
      if (s == LMPRESS_ERR_BUFFER_TOO_SMALL) {
        buf.resize(n + 1);
        s = lmpress_detokenize(m, t.data(), t.size(), special, buf.data(), buf.size(), &n);
      }
      check(s);
      buf.resize(n);
    }
    return py::bytes(buf);
  }

 private:
  ModelPtr m_;
  int64_t n_vocab_ = 0;
};

// --------------------------------------------------------------- context

class Context {
 public:
  Context(const Model& model, int64_t n_ctx, int64_t n_batch, const py::object& cache)
      : model_(model.ptr()), n_vocab_(model.n_vocab()), cache_(CacheOptions::from(cache)) {
    lmpress_context_params p = lmpress_context_default_params();
    if (n_ctx >= 0) p.n_ctx = n_ctx;
    if (n_batch > 0) p.n_batch = n_batch;
    cache_.apply(&p.cache);
    py::gil_scoped_release nogil;
    check(lmpress_context_create(model_.get(), &p, &ctx_));
  }
  ~Context() { lmpress_context_free(ctx_); }
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  // The logits of the evaluated tokens: (n, n_vocab) with all_logits, else
  // (1, n_vocab); an array of its own (the library's buffer is reused).
  // Every method takes the lock with the GIL released (an eval holds it while
  // it computes) and reads the handle under it.
  py::array_t<float> eval(const TokenArray& tokens, bool all_logits) {
    const std::vector<int32_t> t = to_vector(tokens);
    if (t.empty()) invalid("Context.eval: no tokens");
    const size_t rows = all_logits ? t.size() : 1;
    py::array_t<float> out({py::ssize_t(rows), py::ssize_t(n_vocab_)});
    float* dst = out.mutable_data();
    Outcome res;
    size_t n_rows = 0;
    bool open;
    {
      py::gil_scoped_release nogil;
      std::lock_guard<std::mutex> lock(mu_);
      lmpress_context* c = ctx_;
      open = c != nullptr;
      if (open) {
        res.set(lmpress_context_eval(c, t.data(), t.size(), all_logits));
        if (res.status == LMPRESS_OK) {
          const float* l = lmpress_context_logits(c, &n_rows);
          if (l && n_rows == rows) std::memcpy(dst, l, rows * size_t(n_vocab_) * sizeof(float));
        }
      }
    }
    if (!open) closed_error();
    res.check();
    if (n_rows != rows)
      throw StatusError(LMPRESS_ERR_INTERNAL, "lmpress_context_logits: " + std::to_string(n_rows) +
                                                  " rows after an eval of " + std::to_string(rows));
    return out;
  }

  // The last eval's logits (a copy), or None before any.
  py::object logits() {
    std::vector<float> copy;
    size_t n_rows = 0;
    bool open, any = false;
    {
      py::gil_scoped_release nogil;
      std::lock_guard<std::mutex> lock(mu_);
      open = ctx_ != nullptr;
      const float* l = open ? lmpress_context_logits(ctx_, &n_rows) : nullptr;
      if (l) {
        any = true;
        copy.assign(l, l + n_rows * size_t(n_vocab_));
      }
    }
    if (!open) closed_error();
    if (!any) return py::none();
    py::array_t<float> out({py::ssize_t(n_rows), py::ssize_t(n_vocab_)});
    std::memcpy(out.mutable_data(), copy.data(), copy.size() * sizeof(float));
    return std::move(out);
  }

  int64_t n_past() {
    int64_t n = -1;
    {
      py::gil_scoped_release nogil;
      std::lock_guard<std::mutex> lock(mu_);
      if (ctx_) n = lmpress_context_n_past(ctx_);
    }
    if (n < 0) closed_error();
    return n;
  }

  void truncate(int64_t n) {
    Outcome res;
    bool open;
    {
      py::gil_scoped_release nogil;
      std::lock_guard<std::mutex> lock(mu_);
      open = ctx_ != nullptr;
      if (open) res.set(lmpress_context_truncate(ctx_, n));
    }
    if (!open) closed_error();
    res.check();
  }

  void close() {
    lmpress_context* c = nullptr;
    {
      py::gil_scoped_release nogil;
      std::lock_guard<std::mutex> lock(mu_);
      std::swap(c, ctx_);
    }
    lmpress_context_free(c);
    model_.reset();
  }
  bool closed() {
    py::gil_scoped_release nogil;
    std::lock_guard<std::mutex> lock(mu_);
    return ctx_ == nullptr;
  }

 private:
  [[noreturn]] static void closed_error() { invalid("the context is closed"); }
  ModelPtr model_;  // outlives the context
  int64_t n_vocab_;
  CacheOptions cache_;
  lmpress_context* ctx_ = nullptr;
  std::mutex mu_;  // a context belongs to one thread at a time
};

// ---------------------------------------------------------------- sampler

class Sampler {
 public:
  explicit Sampler(const py::object& params) {
    const lmpress_sampler_params p = sampler_params(params);
    check(lmpress_sampler_create(&p, &s_));
  }
  ~Sampler() { lmpress_sampler_free(s_); }
  Sampler(const Sampler&) = delete;
  Sampler& operator=(const Sampler&) = delete;

  int32_t sample(const FloatArray& logits, const std::optional<TokenArray>& history) {
    if (logits.ndim() != 1) invalid("Sampler.sample: logits must be 1-D (one row of n_vocab)");
    std::vector<int32_t> h;
    if (history) h = to_vector(*history);
    const float* l = logits.data();
    const int64_t n = logits.size();
    int32_t tok = -1;
    py::gil_scoped_release nogil;
    std::lock_guard<std::mutex> lock(mu_);
    check(lmpress_sampler_sample(s_, l, n, h.empty() ? nullptr : h.data(), h.size(), &tok));
    return tok;
  }

 private:
  lmpress_sampler* s_ = nullptr;
  std::mutex mu_;
};

// ------------------------------------------------------------- generation

struct GenerateArgs {
  std::string prompt;
  int64_t n_predict = 64, n_ctx = 0;
  bool ignore_eos = false;
  lmpress_sampler_params sampling;
  CacheOptions cache;

  lmpress_generate_params params() const {
    lmpress_generate_params p = lmpress_generate_default_params();
    p.n_predict = n_predict;
    p.n_ctx = n_ctx;
    p.ignore_eos = ignore_eos;
    p.sampling = sampling;
    cache.apply(&p.cache);
    return p;
  }
};

GenerateArgs generate_args(const std::string& prompt, int64_t n_predict, int64_t n_ctx, bool ignore_eos,
                           const py::object& sampling, const py::object& cache) {
  GenerateArgs a;
  a.prompt = prompt;
  a.n_predict = n_predict;
  a.n_ctx = n_ctx;
  a.ignore_eos = ignore_eos;
  a.sampling = sampler_params(sampling);
  a.cache = CacheOptions::from(cache);
  return a;
}

// A generation streamed to Python, stepped on the calling thread with the C
// API's lmpress_generation_*: the first next() runs the prompt
// (lmpress_generation_start), each next() one decoding step
// (lmpress_generation_next), both with the GIL released; there is no thread or
// queue of its own, so nothing is generated ahead of the iteration. close()
// (or the object's end) frees the generation: stop reason "caller" unless it
// had ended. Calls from several Python threads take turns (mu_, always taken
// with the GIL released).
class Generation {
 public:
  Generation(const Model& model, GenerateArgs args) : model_(model.ptr()), args_(std::move(args)) {
    params_ = args_.params();  // on_token/user_data: unused by the stepped API
  }
  ~Generation() { lmpress_generation_free(gen_); }
  Generation(const Generation&) = delete;
  Generation& operator=(const Generation&) = delete;

  // (token, text) of the next token; StopIteration at the end; the
  // generation's error, once, if it failed. A pending signal's exception
  // (Ctrl-C: KeyboardInterrupt) is raised before another token is computed,
  // the generation left paused as when it lands in Python code between steps.
  py::tuple next() {
    if (PyErr_CheckSignals() != 0) throw py::error_already_set();
    Outcome out;
    int32_t token = -1;
    bool got = false;
    std::string piece;  // a token's text: a few bytes (no allocation)
    {
      py::gil_scoped_release nogil;
      std::lock_guard<std::mutex> lk(mu_);
      if (state_ == State::Fresh) {
        state_ = State::Running;
        out.set(lmpress_generation_start(model_.get(), args_.prompt.c_str(), &params_, &gen_));
        if (out.status != LMPRESS_OK) end_locked(false);
      }
      if (state_ == State::Running) {
        const char* text = nullptr;
        size_t len = 0;
        bool done = false;
        out.set(lmpress_generation_next(gen_, &token, &text, &len, &done));
        if (out.status != LMPRESS_OK) {
          end_locked(false);
        } else if (done) {
          if (len) tail_.assign(text, len);  // bytes the last token left incomplete
          end_locked(true);
        } else {
          got = true;
          if (len) piece.assign(text, len);
        }
      }
    }
    if (got) return py::make_tuple(token, decode_utf8(piece.data(), piece.size()));
    out.check();  // raised once: the generation has ended
    throw py::stop_iteration();
  }

  // Frees the generation (a no-op once it ended).
  void close() {
    py::gil_scoped_release nogil;
    std::lock_guard<std::mutex> lk(mu_);
    end_locked(true);
  }

  // The C result once the generation ended or was closed (None while it runs,
  // and after a failure).
  py::object result() {
    bool have;
    lmpress_generate_result r;
    {
      py::gil_scoped_release nogil;
      std::lock_guard<std::mutex> lk(mu_);
      have = state_ == State::Ended && have_result_;
      r = result_;
    }
    if (!have) return py::none();
    py::dict d = result_dict(r);
    return std::move(d);
  }
  bool done() {
    py::gil_scoped_release nogil;
    std::lock_guard<std::mutex> lk(mu_);
    return state_ == State::Ended;
  }
  // What the end released after the last token (an incomplete character's bytes), as text.
  py::str tail() {
    std::string t;
    {
      py::gil_scoped_release nogil;
      std::lock_guard<std::mutex> lk(mu_);
      t = tail_;
    }
    return decode_utf8(t.data(), t.size());
  }

 private:
  enum class State { Fresh, Running, Ended };
  std::string tail_;

  // Ends the generation (with mu_ held): keeps its result (with_result) and
  // frees it.
  void end_locked(bool with_result) {
    if (state_ == State::Ended) return;
    if (with_result) {
      std::memset(&result_, 0, sizeof result_);
      result_.stop_reason = LMPRESS_STOP_CALLER;  // closed before the first token
      have_result_ = !gen_ || lmpress_generation_result(gen_, &result_) == LMPRESS_OK;
    }
    lmpress_generation_free(gen_);
    gen_ = nullptr;
    state_ = State::Ended;
  }

  ModelPtr model_;  // outlives the generation
  GenerateArgs args_;
  lmpress_generate_params params_;
  std::mutex mu_;
  State state_ = State::Fresh;
  lmpress_generation* gen_ = nullptr;
  lmpress_generate_result result_{};
  bool have_result_ = false;
};

// A whole generation in one lmpress_generate call (GIL released): the token
// callback keeps ids and text in C++ (collect) or does nothing else (not
// collect: the C API's own speed); Ctrl-C stops it (Interrupt) and is raised.
struct BlockingRun {
  bool collect = true;
  std::vector<int32_t> tokens;
  std::string text;
  Interrupt intr;

  static bool on_token(int32_t token, const char* text, size_t len, void* user) {
    auto* r = static_cast<BlockingRun*>(user);
    if (r->collect) {
      if (token >= 0) r->tokens.push_back(token);  // -1: the bytes held back at the end
      r->text.append(text, len);
    }
    return !r->intr.poll();
  }
};

py::dict generate_blocking(const Model& model, const std::string& prompt, int64_t n_predict, int64_t n_ctx,
                           bool ignore_eos, const py::object& sampling, const py::object& cache, bool collect) {
  const GenerateArgs a = generate_args(prompt, n_predict, n_ctx, ignore_eos, sampling, cache);
  lmpress_generate_params p = a.params();
  BlockingRun run;
  run.collect = collect;
  p.on_token = &BlockingRun::on_token;
  p.user_data = &run;
  lmpress_generate_result r;
  std::memset(&r, 0, sizeof r);
  ModelPtr keep = model.ptr();
  Outcome out;
  {
    py::gil_scoped_release nogil;
    out.set(lmpress_generate(keep.get(), a.prompt.c_str(), &p, &r));
  }
  run.intr.rethrow_if_any();
  out.check();
  py::dict d = result_dict(r);
  d["tokens"] = run.tokens;
  d["text"] = decode_utf8(run.text.data(), run.text.size());
  return d;
}

// ------------------------------------------------------ evaluation, tools
// (perplexity, kld; quantize, prune, convert: each one C call on the calling
// thread with the GIL released)

py::dict perplexity(const Model& model, const std::string& text, int64_t n_ctx, int64_t n_chunks,
                    const std::optional<std::string>& protocol, const py::object& cache, const py::object& progress) {
  lmpress_perplexity_params p = lmpress_perplexity_default_params();
  p.n_ctx = n_ctx;
  p.n_chunks = n_chunks;
  if (protocol) p.protocol = protocol->c_str();
  const CacheOptions c = CacheOptions::from(cache);
  c.apply(&p.cache);
  lmpress_perplexity_result r;
  std::memset(&r, 0, sizeof r);
  ModelPtr keep = model.ptr();
  call_with_progress(p, progress, [&] { return lmpress_perplexity(keep.get(), text.data(), text.size(), &p, &r); });
  py::dict d;
  d["ppl"] = r.ppl;
  d["ppl_stderr"] = r.ppl_stderr;
  d["mean_nll"] = r.mean_nll;
  d["n_tokens_scored"] = r.n_tokens_scored;
  d["n_chunks"] = r.n_chunks;
  return d;
}

// C string views of a list of str, alive as long as `v`.
std::vector<const char*> c_strings(const std::vector<std::string>& v) {
  std::vector<const char*> out;
  for (const auto& s : v) out.push_back(s.c_str());
  return out;
}

void quantize(const std::string& in_path, const std::string& out_path, const std::string& type,
              const std::optional<std::string>& method, const std::optional<std::string>& calib,
              int64_t calib_samples, int64_t calib_ctx, const std::optional<std::string>& imatrix, double damp,
              bool act_order, const std::optional<std::string>& rotate, const std::optional<std::string>& scheme,
              double smooth, const std::optional<std::string>& compensate,
              const std::optional<std::string>& compensate_out, const py::object& progress,
              const std::vector<std::string>& tensor_types, const std::vector<std::string>& targets,
              const std::vector<std::string>& ignore, const std::optional<std::string>& format, bool pure,
              bool keep_output, double target_bpw, const std::optional<std::string>& name) {
  lmpress_quantize_params p = lmpress_quantize_default_params();
  if (format) p.format = format->c_str();
  p.pure = pure;
  p.keep_output = keep_output;
  p.target_bpw = target_bpw;
  if (name) p.name = name->c_str();
  const auto tt = c_strings(tensor_types), tg = c_strings(targets), ig = c_strings(ignore);
  p.tensor_types = tt.data(), p.n_tensor_types = tt.size();
  p.targets = tg.data(), p.n_targets = tg.size();
  p.ignore = ig.data(), p.n_ignore = ig.size();
  if (compensate) p.compensate = compensate->c_str();
  if (compensate_out) p.compensate_out = compensate_out->c_str();
  if (!type.empty()) p.type = type.c_str();
  if (scheme) p.scheme = scheme->c_str();
  p.smooth = smooth;
  if (method) p.method = method->c_str();
  if (calib) p.calib_path = calib->c_str();
  p.calib_samples = calib_samples;
  p.calib_ctx = calib_ctx;
  if (imatrix) p.imatrix_path = imatrix->c_str();
  p.damp = damp;
  p.act_order = act_order;
  if (rotate) p.rotate = rotate->c_str();
  call_with_progress(p, progress, [&] { return lmpress_quantize(in_path.c_str(), out_path.c_str(), &p); });
}

void prune(const std::string& in_path, const std::string& out_path, const std::optional<std::string>& method,
           double sparsity, const std::optional<std::string>& nm, const std::optional<std::string>& quantize_type,
           const std::optional<std::string>& calib, int64_t calib_samples, int64_t calib_ctx, double damp,
           const std::optional<std::string>& rotate, const std::optional<std::string>& compensate,
           const std::optional<std::string>& compensate_out, const py::object& progress,
           const std::optional<std::string>& structured, const std::vector<std::string>& targets,
           const std::vector<std::string>& ignore) {
  lmpress_prune_params p = lmpress_prune_default_params();
  if (structured) p.structured = structured->c_str();
  const auto tg = c_strings(targets), ig = c_strings(ignore);
  p.targets = tg.data(), p.n_targets = tg.size();
  p.ignore = ig.data(), p.n_ignore = ig.size();
  if (compensate) p.compensate = compensate->c_str();
  if (compensate_out) p.compensate_out = compensate_out->c_str();
  if (method) p.method = method->c_str();
  p.sparsity = sparsity;  // < 0 with nm
  if (nm) p.nm = nm->c_str();
  if (quantize_type) p.quantize = quantize_type->c_str();
  if (calib) p.calib_path = calib->c_str();
  p.calib_samples = calib_samples;
  p.calib_ctx = calib_ctx;
  p.damp = damp;
  if (rotate) p.rotate = rotate->c_str();
  call_with_progress(p, progress, [&] { return lmpress_prune(in_path.c_str(), out_path.c_str(), &p); });
}

void lowrank(const std::string& in_path, const std::string& out_path, const std::string& method, double ratio,
             int64_t rank, bool global, double alpha, const std::string& factor_type,
             const std::optional<std::string>& calib, int64_t calib_samples, int64_t calib_ctx,
             const std::vector<std::string>& targets, const std::vector<std::string>& ignore,
             const std::optional<std::string>& name, const py::object& progress) {
  lmpress_lowrank_params p = lmpress_lowrank_default_params();
  p.method = method.c_str();
  p.ratio = ratio;
  p.rank = rank;
  p.global = global;
  p.alpha = alpha;
  p.factor_type = factor_type.c_str();
  if (calib) p.calib_path = calib->c_str();
  p.calib_samples = calib_samples;
  p.calib_ctx = calib_ctx;
  const auto tg = c_strings(targets), ig = c_strings(ignore);
  p.targets = tg.data(), p.n_targets = tg.size();
  p.ignore = ig.data(), p.n_ignore = ig.size();
  if (name) p.name = name->c_str();
  call_with_progress(p, progress, [&] { return lmpress_lowrank(in_path.c_str(), out_path.c_str(), &p); });
}

// No progress callback in the C API: Ctrl-C waits for the end (seconds for
// small models).
void convert(const std::string& in_path, const std::string& out_path, const std::optional<std::string>& dtype,
             const std::optional<std::string>& format) {
  Outcome out;
  {
    py::gil_scoped_release nogil;
    out.set(lmpress_convert(in_path.c_str(), out_path.c_str(), dtype ? dtype->c_str() : nullptr,
                            format ? format->c_str() : nullptr));
  }
  out.check();
}

// base and cand may be one model (other cache types).
py::dict kld(const Model& base, const Model& cand, const std::string& text, int64_t n_ctx, int64_t n_chunks,
             const py::object& cache, const py::object& base_cache, const py::object& progress) {
  lmpress_kld_params p = lmpress_kld_default_params();
  p.n_ctx = n_ctx;
  p.n_chunks = n_chunks;
  const CacheOptions c = CacheOptions::from(cache), bc = CacheOptions::from(base_cache);
  c.apply(&p.cache);
  bc.apply(&p.base_cache);
  lmpress_kld_result r;
  std::memset(&r, 0, sizeof r);
  const ModelPtr keep_base = base.ptr(), keep_cand = cand.ptr();
  call_with_progress(p, progress, [&] { return lmpress_kld(keep_base.get(), keep_cand.get(), text.data(), text.size(), &p, &r); });
  py::dict d;
  d["kld"] = r.kld;
  d["kld_unc"] = r.kld_unc;
  d["ppl"] = r.ppl;
  d["ppl_base"] = r.ppl_base;
  d["same_top"] = r.same_top;
  d["rms_p_diff"] = r.rms_p_diff;
  d["n_tokens"] = r.n_tokens;
  d["n_chunks"] = r.n_chunks;
  return d;
}

py::bytes chat_template(const std::vector<std::pair<std::string, std::string>>& messages, const Model* model,
                        const std::optional<std::string>& template_name, bool add_generation_prompt) {
  std::vector<lmpress_chat_message> msgs;
  msgs.reserve(messages.size());
  for (const auto& m : messages) msgs.push_back({m.first.c_str(), m.second.c_str()});
  const ModelPtr keep = model ? model->ptr() : ModelPtr();
  const lmpress_model* m = keep.get();
  const char* name = template_name ? template_name->c_str() : nullptr;
  std::string buf;
  {
    py::gil_scoped_release nogil;
    size_t cap = 256;
    for (const auto& x : messages) cap += x.first.size() + x.second.size() + 64;
    buf.resize(cap);
    size_t n = 0;
    lmpress_status s =
        lmpress_chat_apply_template(m, name, msgs.data(), msgs.size(), add_generation_prompt, buf.data(), buf.size(), &n);
    if (s == LMPRESS_ERR_BUFFER_TOO_SMALL) {
      buf.resize(n + 1);
      s = lmpress_chat_apply_template(m, name, msgs.data(), msgs.size(), add_generation_prompt, buf.data(), buf.size(),
                                      &n);
    }
    check(s);
    buf.resize(n);
  }
  return py::bytes(buf);
}

void set_threads(int n) {
  if (n < 0) invalid("set_threads: " + std::to_string(n) + " threads (0: all cores)");
  check(lmpress_set_threads(n));  // checks the range; every thread that computes applies it
  g_threads.store(n);
}

}  // namespace

PYBIND11_MODULE(_lmpress, m) {
  m.doc() = "Bindings of liblmpress's C API (use the lmpress package, not this module)";

  // The header this module was compiled with must match the library loaded.
  if (lmpress_api_version() != LMPRESS_API_VERSION)
    throw std::runtime_error("lmpress._lmpress was built for API version " + std::to_string(LMPRESS_API_VERSION) +
                             " of liblmpress, the library loaded (" + lmpress_version() + ") has API version " +
                             std::to_string(lmpress_api_version()) + ": rebuild the Python package");

  g_main_thread = py::module_::import("threading").attr("main_thread")().attr("ident").cast<unsigned long>();

  py::module_ errors = py::module_::import("lmpress._errors");
  const char* names[7] = {"Error", "InvalidArgument", "Error", "Cancelled", "Error", "OutOfMemory", "InternalError"};
  for (int i = 0; i < 7; i++) g_error_classes[i] = py::object(errors.attr(names[i])).release();

  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const StatusError& e) {
      const int code = int(e.status);
      py::handle cls = g_error_classes[(code >= 0 && code < 7) ? code : 0];
      py::object inst = cls(e.message);
      inst.attr("code") = code;
      inst.attr("status") = lmpress_status_name(e.status);
      PyErr_SetObject(cls.ptr(), inst.ptr());
    }
  });

  m.attr("API_VERSION") = LMPRESS_API_VERSION;
  m.def("version", [] { return std::string(lmpress_version()); }, "The version of the liblmpress loaded");
  m.def("api_version", &lmpress_api_version, "LMPRESS_API_VERSION of the liblmpress loaded");
  m.def("set_threads", &set_threads, py::arg("n"));
  m.def("get_threads", [] { return g_threads.load(); });
  m.def("last_report", [] { return std::string(lmpress_last_report()); },
        "This thread's last compression or evaluation report, JSON text");
  m.def("defaults", &defaults);

  py::class_<Model>(m, "Model")
      .def_static("load", &Model::load, py::arg("path"), py::arg("tokenizer_path") = py::none(),
                  py::arg("repack") = true, py::arg("progress") = py::none())
      .def("info", &Model::info)
      .def("tokenize", &Model::tokenize, py::arg("text"), py::arg("add_special") = true,
           py::arg("parse_special") = false)
      .def("detokenize", &Model::detokenize, py::arg("tokens"), py::arg("special") = false)
      .def("close", &Model::close)
      .def_property_readonly("closed", &Model::closed)
      .def_property_readonly("n_vocab", &Model::n_vocab);

  py::class_<Context>(m, "Context")
      .def(py::init<const Model&, int64_t, int64_t, const py::object&>(), py::arg("model"), py::arg("n_ctx") = 0,
           py::arg("n_batch") = 0, py::arg("cache") = py::none())
      .def("eval", &Context::eval, py::arg("tokens"), py::arg("all_logits") = false)
      .def("logits", &Context::logits)
      .def("n_past", &Context::n_past)
      .def("truncate", &Context::truncate, py::arg("n"))
      .def("close", &Context::close)
      .def_property_readonly("closed", &Context::closed);

  py::class_<Sampler>(m, "Sampler")
      .def(py::init<const py::object&>(), py::arg("params") = py::none())
      .def("sample", &Sampler::sample, py::arg("logits"), py::arg("history") = py::none());

  py::class_<Generation>(m, "Generation")
      .def(py::init([](const Model& model, const std::string& prompt, int64_t n_predict, int64_t n_ctx,
                       bool ignore_eos, const py::object& sampling, const py::object& cache) {
             return std::make_unique<Generation>(model,
                                                 generate_args(prompt, n_predict, n_ctx, ignore_eos, sampling, cache));
           }),
           py::arg("model"), py::arg("prompt"), py::arg("n_predict"), py::arg("n_ctx") = 0,
           py::arg("ignore_eos") = false, py::arg("sampling") = py::none(), py::arg("cache") = py::none())
      .def("next", &Generation::next)
      .def("close", &Generation::close)
      .def("result", &Generation::result)
      .def("done", &Generation::done)
      .def("tail", &Generation::tail);

  m.def("generate", &generate_blocking, py::arg("model"), py::arg("prompt"), py::arg("n_predict"),
        py::arg("n_ctx") = 0, py::arg("ignore_eos") = false, py::arg("sampling") = py::none(),
        py::arg("cache") = py::none(), py::arg("collect") = true);
  m.def("perplexity", &perplexity, py::arg("model"), py::arg("text"), py::arg("n_ctx"), py::arg("n_chunks"),
        py::arg("protocol") = py::none(), py::arg("cache") = py::none(), py::arg("progress") = py::none());
  m.def("quantize", &quantize, py::arg("in_path"), py::arg("out_path"), py::arg("type"), py::arg("method"),
        py::arg("calib"), py::arg("calib_samples"), py::arg("calib_ctx"), py::arg("imatrix"), py::arg("damp"),
        py::arg("act_order"), py::arg("rotate"), py::arg("scheme"), py::arg("smooth"), py::arg("compensate"),
        py::arg("compensate_out"), py::arg("progress"), py::arg("tensor_types") = std::vector<std::string>(),
        py::arg("targets") = std::vector<std::string>(), py::arg("ignore") = std::vector<std::string>(),
        py::arg("format") = py::none(), py::arg("pure") = false, py::arg("keep_output") = false,
        py::arg("target_bpw") = 0.0, py::arg("name") = py::none());
  m.def("prune", &prune, py::arg("in_path"), py::arg("out_path"), py::arg("method"), py::arg("sparsity"),
        py::arg("nm"), py::arg("quantize"), py::arg("calib"), py::arg("calib_samples"), py::arg("calib_ctx"),
        py::arg("damp"), py::arg("rotate"), py::arg("compensate"), py::arg("compensate_out"), py::arg("progress"),
        py::arg("structured") = py::none(), py::arg("targets") = std::vector<std::string>(),
        py::arg("ignore") = std::vector<std::string>());
  m.def("lowrank", &lowrank, py::arg("in_path"), py::arg("out_path"), py::arg("method"), py::arg("ratio"),
        py::arg("rank"), py::arg("global_budget"), py::arg("alpha"), py::arg("factor_type"), py::arg("calib"),
        py::arg("calib_samples"), py::arg("calib_ctx"), py::arg("targets"), py::arg("ignore"), py::arg("name"),
        py::arg("progress"));
  m.def("convert", &convert, py::arg("in_path"), py::arg("out_path"), py::arg("dtype") = py::none(),
        py::arg("format") = py::none());
  m.def("kld", &kld, py::arg("base"), py::arg("cand"), py::arg("text"), py::arg("n_ctx"), py::arg("n_chunks"),
        py::arg("cache") = py::none(), py::arg("base_cache") = py::none(), py::arg("progress") = py::none());
  m.def("chat_template", &chat_template, py::arg("messages"), py::arg("model") = nullptr,
        py::arg("template_name") = py::none(), py::arg("add_generation_prompt") = true);
}
