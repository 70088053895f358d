#include "serve/server.h"

#include <httplib.h>

#include <chrono>
#include <cmath>
#include <deque>
#include <random>

#include "core/error.h"
#include "runtime/chat_template.h"
#include "serve/connection.h"
#include "serve/http_json.h"
#include "serve/text_stream.h"

namespace lmpress::serve {
namespace {

using Json = nlohmann::ordered_json;

// A request the server refuses, with its HTTP status.
struct HttpError : std::runtime_error {
  int status;
  HttpError(int s, const std::string& m) : std::runtime_error(m), status(s) {}
};

// Sampled byte tokens can make invalid UTF-8: it is sent as U+FFFD.
std::string dump(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

void send_json(httplib::Response& res, int status, const Json& j) {
  res.status = status;
  res.set_content(dump(j), "application/json");
}

// Compares without returning early at the first differing byte, so the
// time a wrong key takes does not tell how much of it was right.
bool same_secret(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size(); i++) diff |= static_cast<unsigned char>(a[i] ^ b[i % std::max<size_t>(b.size(), 1)]);
  return diff == 0 && !b.empty();
}

int64_t now_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// Nesting deeper than any request needs is refused while parsing: copying or
// printing a JSON value recurses once per level, and a body of a million '['
// would overflow the handler thread's stack.
constexpr int kMaxJsonDepth = 64;

Json parse_body(const httplib::Request& req) {
  Json body;
  try {
    body = Json::parse(req.body, [](int depth, Json::parse_event_t ev, Json&) {
      if ((ev == Json::parse_event_t::object_start || ev == Json::parse_event_t::array_start) && depth >= kMaxJsonDepth)
        throw HttpError(400, fmt::format("the request body nests JSON deeper than {} levels", kMaxJsonDepth));
      return true;
    });
  } catch (const Json::parse_error& e) {
    throw HttpError(400, fmt::format("the request body is not valid JSON: {}", e.what()));
  }
  if (!body.is_object()) throw HttpError(400, "the request body must be a JSON object");
  return body;
}

// Optional members, checked: the message names the field and what it must be.
bool has(const Json& b, const char* k) { return b.contains(k) && !b[k].is_null(); }

double number(const Json& b, const char* k, double def, double lo, double hi) {
  if (!has(b, k)) return def;
  if (!b[k].is_number()) throw HttpError(400, fmt::format("'{}' must be a number", k));
  const double v = b[k].get<double>();
  if (!(v >= lo && v <= hi)) throw HttpError(400, fmt::format("'{}' is {}; it must be in [{}, {}]", k, v, lo, hi));
  return v;
}

int64_t integer(const Json& b, const char* k, int64_t def, int64_t lo, int64_t hi) {
  if (!has(b, k)) return def;
  if (!b[k].is_number_integer()) throw HttpError(400, fmt::format("'{}' must be an integer", k));
  if (b[k].is_number_unsigned() && b[k].get<uint64_t>() > uint64_t(hi))
    throw HttpError(400, fmt::format("'{}' is {}; it must be in [{}, {}]", k, b[k].get<uint64_t>(), lo, hi));
  const int64_t v = b[k].get<int64_t>();
  if (v < lo || v > hi) throw HttpError(400, fmt::format("'{}' is {}; it must be in [{}, {}]", k, v, lo, hi));
  return v;
}

bool boolean(const Json& b, const char* k, bool def) {
  if (!has(b, k)) return def;
  if (!b[k].is_boolean()) throw HttpError(400, fmt::format("'{}' must be true or false", k));
  return b[k].get<bool>();
}

// What a completion or chat request asks for, beyond its prompt.
struct Params {
  std::vector<std::vector<int32_t>> prompts;
  int64_t max_tokens = 0;  // 0: up to the context
  SamplerOptions sampling;
  bool ignore_eos = false, stream = false, include_usage = false;
  std::vector<std::string> stop;
  int n = 1;
  int logprobs = -1;  // -1: none; else the number of top alternatives
};

constexpr size_t kMaxStopBytes = 256;
// Prompts × n of one request: each is a sequence in the engine.
constexpr size_t kMaxChoices = 128;

void parse_params(const Json& b, bool chat, Params& p) {
  const int64_t mt = integer(b, chat && has(b, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens", 0,
                             1, int64_t(1) << 30);
  p.max_tokens = mt;
  SamplerOptions& s = p.sampling;
  // OpenAI's defaults: temperature 1, top_p 1, no top-k or min-p.
  s.temperature = float(number(b, "temperature", 1.0, 0.0, 100.0));
  s.top_p = float(number(b, "top_p", 1.0, 0.0, 1.0));
  if (has(b, "top_p") && s.top_p <= 0.0f) throw HttpError(400, "'top_p' must be greater than 0");
  s.top_k = int(integer(b, "top_k", 0, -1, 1 << 24));
  s.min_p = float(number(b, "min_p", 0.0, 0.0, 1.0));
  s.presence_penalty = float(number(b, "presence_penalty", 0.0, -2.0, 2.0));
  s.frequency_penalty = float(number(b, "frequency_penalty", 0.0, -2.0, 2.0));
  // vLLM's name and llama-server's.
  s.repeat_penalty = float(number(b, has(b, "repetition_penalty") ? "repetition_penalty" : "repeat_penalty", 1.0,
                                  0.01, 100.0));
  s.penalty_last_n = int(integer(b, "repeat_last_n", 64, -1, 1 << 24));
  if (has(b, "seed")) {
    if (!b["seed"].is_number_integer()) throw HttpError(400, "'seed' must be an integer");
    s.seed = b["seed"].is_number_unsigned() ? b["seed"].get<uint64_t>() : uint64_t(b["seed"].get<int64_t>());
  } else {
    s.seed = std::random_device{}();
  }
  p.ignore_eos = boolean(b, "ignore_eos", false);
  p.stream = boolean(b, "stream", false);
  if (has(b, "stream_options")) {
    if (!b["stream_options"].is_object()) throw HttpError(400, "'stream_options' must be an object");
    p.include_usage = boolean(b["stream_options"], "include_usage", false);
  }
  p.n = int(integer(b, "n", 1, 1, 16));
  if (has(b, "stop")) {
    const Json& st = b["stop"];
    if (st.is_string()) {
      p.stop.push_back(st.get<std::string>());
    } else if (st.is_array() && st.size() <= 16) {
      for (const Json& x : st) {
        if (!x.is_string()) throw HttpError(400, "'stop' must be a string or an array of strings");
        p.stop.push_back(x.get<std::string>());
      }
    } else {
      throw HttpError(400, "'stop' must be a string or an array of at most 16 strings");
    }
    for (const std::string& x : p.stop)
      if (x.empty() || x.size() > kMaxStopBytes)
        throw HttpError(400, fmt::format("each 'stop' string must have 1 to {} bytes", kMaxStopBytes));
  }
  if (chat) {
    if (boolean(b, "logprobs", false)) p.logprobs = int(integer(b, "top_logprobs", 0, 0, 20));
    else if (has(b, "top_logprobs")) throw HttpError(400, "'top_logprobs' needs 'logprobs': true");
  } else {
    if (has(b, "logprobs")) p.logprobs = int(integer(b, "logprobs", 0, 0, 20));
    if (boolean(b, "echo", false)) throw HttpError(400, "'echo' is not supported");
    if (integer(b, "best_of", 1, 1, 1) != 1) throw HttpError(400, "'best_of' must be 1");
    if (has(b, "suffix")) throw HttpError(400, "'suffix' is not supported");
  }
}

// One sequence of a response (prompt i, sample j): its events become text.
struct Choice {
  int64_t id = 0;  // the engine's
  int index = 0;
  int64_t prompt_tokens = 0, cached_tokens = 0;
  TextStream text;
  std::string out;                  // text sent or to send
  size_t sent = 0;                  // bytes of `out` streamed
  std::vector<int32_t> tokens;      // generated
  std::vector<TokenLogprobs> lps;   // for each token, when asked
  size_t lps_sent = 0;
  std::string finish;  // "stop", "length"; "cancelled" when the server stopped it, "error" when a step failed
};

// A response in progress: its choices, and the events the engine thread hands over.
class Job {
 public:
  Job(Engine& e, const Params& p) : engine_(e), p_(p) {}
  ~Job() { cancel_unfinished(); }

  // Submits every choice; throws HttpError (413 over the context, 503 queue full).
  void start() {
    const int64_t ctx = engine_.ctx_size();
    for (const auto& prompt : p_.prompts)
      if (int64_t(prompt.size()) >= ctx)
        throw HttpError(413, fmt::format("the prompt has {} tokens; the context holds {} (--ctx-size)", prompt.size(), ctx));
    for (size_t i = 0; i < p_.prompts.size(); i++)
      for (int j = 0; j < p_.n; j++) {
        auto c = std::make_unique<Choice>();
        c->index = int(i) * p_.n + j;
        c->prompt_tokens = int64_t(p_.prompts[i].size());
        c->text = TextStream(p_.stop);
        choices_.push_back(std::move(c));
      }
    for (auto& c : choices_) {
      Request r;
      r.prompt = p_.prompts[size_t(c->index / p_.n)];
      r.max_tokens = p_.max_tokens > 0 ? p_.max_tokens : engine_.ctx_size();
      r.sampling = p_.sampling;
      r.sampling.seed += uint64_t(c->index);  // n samples of one prompt differ
      r.ignore_eos = p_.ignore_eos;
      r.logprobs = p_.logprobs;
      const int index = c->index;
      try {
        c->id = engine_.submit(std::move(r), [this, index](const StepEvent& e) {
          std::lock_guard lk(mu_);
          events_.emplace_back(index, e);
          cv_.notify_all();
        });
      } catch (const Engine::QueueFull& e) {
        throw HttpError(503, e.what());
      } catch (const Error& e) {
        throw HttpError(400, e.what());
      }
      live_++;
    }
  }

  // Waits up to `timeout` for events and turns them into text; returns the
  // choices that changed.
  std::vector<Choice*> poll(std::chrono::milliseconds timeout) {
    std::deque<std::pair<int, StepEvent>> evs;
    {
      std::unique_lock lk(mu_);
      cv_.wait_for(lk, timeout, [&] { return !events_.empty(); });
      evs.swap(events_);
    }
    std::vector<Choice*> changed;
    for (auto& [index, e] : evs) {
      Choice& c = *choices_[size_t(index)];
      if (!c.finish.empty()) continue;  // ended by a stop string; the engine's later events are moot
      if (e.token >= 0) {
        c.tokens.push_back(e.token);
        if (p_.logprobs >= 0) c.lps.push_back(e.logprobs);
        c.out += c.text.push(engine_.model().tokenizer->decode_token(e.token));
        if (c.text.stopped()) {
          c.finish = "stop";
          engine_.cancel(c.id);
        }
      }
      if (c.finish.empty() && e.finished != FinishReason::None) {
        c.out += c.text.flush();
        c.finish = e.finished == FinishReason::Eos      ? "stop"
                   : e.finished == FinishReason::Length ? "length"
                   : e.finished == FinishReason::Error  ? "error"
                                                        : "cancelled";
      }
      c.cached_tokens = std::max(c.cached_tokens, e.cached_prompt_tokens);
      if (!c.finish.empty()) live_--;
      if (changed.empty() || changed.back() != &c) changed.push_back(&c);
    }
    return changed;
  }

  bool done() const { return live_ == 0; }
  void cancel_unfinished() {
    for (auto& c : choices_)
      if (c->finish.empty()) engine_.cancel(c->id);
  }
  const std::vector<std::unique_ptr<Choice>>& choices() const { return choices_; }
  const Params& params() const { return p_; }

  Json usage() const {
    int64_t prompt = 0, completion = 0, cached = 0;
    for (const auto& c : choices_) {
      completion += int64_t(c->tokens.size());
      if (c->index % p_.n == 0) {
        prompt += c->prompt_tokens;
        cached += c->cached_tokens;
      }
    }
    return {{"prompt_tokens", prompt},
            {"completion_tokens", completion},
            {"total_tokens", prompt + completion},
            {"prompt_tokens_details", {{"cached_tokens", cached}}}};
  }

 private:
  Engine& engine_;
  Params p_;
  std::vector<std::unique_ptr<Choice>> choices_;
  int live_ = 0;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::pair<int, StepEvent>> events_;
};

Json byte_list(const std::string& s) {
  Json a = Json::array();
  for (unsigned char ch : s) a.push_back(int(ch));
  return a;
}

// Log probabilities of c's tokens [from, to): the chat format or the completions format.
Json logprobs_json(const Tokenizer& tok, const Choice& c, size_t from, size_t to, bool chat, size_t text_offset) {
  if (chat) {
    Json content = Json::array();
    for (size_t i = from; i < to; i++) {
      const std::string piece = tok.decode_token(c.tokens[i]);
      Json top = Json::array();
      for (const auto& [id, lp] : c.lps[i].top) {
        const std::string t = tok.decode_token(id);
        top.push_back({{"token", t}, {"logprob", lp}, {"bytes", byte_list(t)}});
      }
      content.push_back({{"token", piece}, {"logprob", c.lps[i].logprob}, {"bytes", byte_list(piece)}, {"top_logprobs", top}});
    }
    return {{"content", content}};
  }
  Json tokens = Json::array(), lps = Json::array(), tops = Json::array(), offsets = Json::array();
  for (size_t i = from; i < to; i++) {
    const std::string piece = tok.decode_token(c.tokens[i]);
    tokens.push_back(piece);
    lps.push_back(c.lps[i].logprob);
    Json top = Json::object();
    for (const auto& [id, lp] : c.lps[i].top) top[tok.decode_token(id)] = lp;
    tops.push_back(top);
    offsets.push_back(text_offset);
    text_offset += piece.size();
  }
  return {{"tokens", tokens}, {"token_logprobs", lps}, {"top_logprobs", tops}, {"text_offset", offsets}};
}

const char* const kEngineFailed = "the engine failed while computing this request (the server's log says why)";

std::string finish_json_value(const std::string& f) { return f == "cancelled" ? "abort" : f; }

}  // namespace

Server::Server(Engine& engine, ServerOptions opt)
    : engine_(engine), opt_(std::move(opt)), http_(std::make_unique<httplib::Server>()) {
  if (opt_.http_threads < 1) fail("--http-threads {}: it must be at least 1", opt_.http_threads);
  const size_t n = size_t(opt_.http_threads);
  http_->new_task_queue = [n] { return new httplib::ThreadPool(n); };
  http_->set_payload_max_length(opt_.max_body_bytes);
  // httplib listens with a backlog of 5: a burst of clients connecting at once
  // would be dropped. The listening socket is kept to listen on it again with
  // a longer one after bind. SO_REUSEADDR, not httplib's SO_REUSEPORT (which
  // would let another process bind the same port).
  http_->set_socket_options([this](socket_t sock) {
    const int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    listen_fd_ = sock;
  });
  // httplib waits out an idle keep-alive connection before stop() returns:
  // short, so that SIGTERM ends the server soon.
  http_->set_keep_alive_timeout(2);
  http_->set_read_timeout(30, 0);
  http_->set_write_timeout(10, 0);
  routes();
}

Server::~Server() = default;

int Server::bind() {
  if (opt_.port < 0 || opt_.port > 65535) fail("--port {}: it must be in [0, 65535]", opt_.port);
  const int port = opt_.port == 0 ? http_->bind_to_any_port(opt_.host) : (http_->bind_to_port(opt_.host, opt_.port) ? opt_.port : -1);
  if (port < 0) fail("cannot listen on {}:{} (address in use, or not an address of this machine)", opt_.host, opt_.port);
  if (listen_fd_ >= 0) ::listen(listen_fd_, 1024);
  return port;
}

bool Server::run() { return http_->listen_after_bind(); }

void Server::stop() { http_->stop(); }

void Server::routes() {
  httplib::Server& s = *http_;
  const int64_t created = now_seconds();
  const Tokenizer& tok = *engine_.model().tokenizer;

  // Errors httplib answers itself (no route, body too large) get a JSON body too.
  s.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    const std::string msg = res.status == 404   ? fmt::format("no route for {} {}", req.method, req.path)
                            : res.status == 413 ? std::string("the request body is too large")
                                                : fmt::format("HTTP status {}", res.status);
    send_json(res, res.status, error_body(res.status, msg));
  });

  // Runs a handler, answering its refusals as OpenAI-style JSON errors.
  // The key is checked here, after httplib has read the request body: a
  // pre-routing refusal would leave the body unread on a keep-alive
  // connection, to be parsed as the start of the client's next request.
  auto guarded = [this](auto body) {
    return [body, this](const httplib::Request& req, httplib::Response& res) {
      try {
        if (!opt_.api_key.empty() && !same_secret(req.get_header_value("Authorization"), "Bearer " + opt_.api_key)) {
          send_json(res, 401, error_body(401, "a valid API key is needed: Authorization: Bearer KEY"));
          res.set_header("WWW-Authenticate", "Bearer");
          return;
        }
        body(req, res);
      } catch (const HttpError& e) {
        send_json(res, e.status, error_body(e.status, e.what()));
      } catch (const Error& e) {
        send_json(res, 400, error_body(400, e.what()));
      } catch (const std::exception& e) {
        send_json(res, 500, error_body(500, e.what()));
      }
    };
  };

  auto check_model = [this](const Json& b) {
    if (!b.contains("model") || b["model"].is_null()) return;
    if (!b["model"].is_string()) throw HttpError(400, "'model' must be a string");
    if (b["model"].get<std::string>() != opt_.model_id)
      throw HttpError(404, fmt::format("the model '{}' does not exist; this server has '{}'", b["model"].get<std::string>(),
                                       opt_.model_id));
  };

  // A text longer than the context could hold even in the longest tokens is
  // refused before it is tokenized.
  size_t longest_token = 1;
  for (const std::string& t : tok.vocab().tokens) longest_token = std::max(longest_token, t.size());
  auto encode = [&tok, this, longest_token](const std::string& text, bool add_bos) {
    const size_t bound = size_t(engine_.ctx_size()) * longest_token;
    if (text.size() > bound)
      throw HttpError(413, fmt::format("the prompt has {} bytes; the context of {} tokens (--ctx-size) holds at most {}",
                                       text.size(), engine_.ctx_size(), bound));
    return tok.encode(text, add_bos, true);
  };

  auto prompt_tokens = [encode, this](const Json& p) {
    std::vector<int32_t> ids;
    if (p.is_string()) return encode(p.get<std::string>(), true);
    if (!p.is_array() || p.empty()) throw HttpError(400, "'prompt' must be a string, an array of token ids, or an array of those");
    const int64_t V = engine_.model().cfg.n_vocab;
    for (const Json& t : p) {
      if (!t.is_number_integer()) throw HttpError(400, "'prompt' must be a string, an array of token ids, or an array of those");
      const int64_t id = t.get<int64_t>();
      if (id < 0 || id >= V) throw HttpError(400, fmt::format("prompt token id {} is outside the vocabulary of {}", id, V));
      ids.push_back(int32_t(id));
    }
    return ids;
  };

  // Answers a started job: one JSON body, or server-sent events.
  auto respond = [this, &tok](std::shared_ptr<Job> job, bool chat, const httplib::Request& req, httplib::Response& res) {
    static std::atomic<int64_t> counter{0};
    const std::string id = fmt::format("{}-{}", chat ? "chatcmpl" : "cmpl", ++counter);
    const std::string object = chat ? "chat.completion" : "text_completion";
    const std::string model = opt_.model_id;
    const int64_t started_at = now_seconds();  // every chunk of a stream carries the same `created`
    if (!job->params().stream) {
      // The answer is written after the handler returns, so a client that
      // leaves is seen here, on its socket, or its sequences would run on.
      const int fd = connection_socket(req.remote_addr, req.remote_port, req.local_port);
      while (!job->done()) {
        job->poll(std::chrono::milliseconds(100));
        if (fd >= 0 && peer_closed(fd)) {
          job->cancel_unfinished();
          return;
        }
      }
      for (const auto& c : job->choices()) {
        if (c->finish == "cancelled") throw HttpError(503, "the server stopped before the request finished");
        if (c->finish == "error") throw HttpError(500, kEngineFailed);
      }
      Json choices = Json::array();
      for (const auto& c : job->choices()) {
        Json ch{{"index", c->index}};
        if (chat) ch["message"] = {{"role", "assistant"}, {"content", c->out}};
        else ch["text"] = c->out;
        ch["logprobs"] = job->params().logprobs >= 0 ? logprobs_json(tok, *c, 0, c->tokens.size(), chat, 0) : Json();
        ch["finish_reason"] = c->finish;
        choices.push_back(ch);
      }
      send_json(res, 200,
                Json{{"id", id}, {"object", object}, {"created", started_at}, {"model", model},
                     {"choices", choices}, {"usage", job->usage()}});
      return;
    }
    const std::string chunk_object = chat ? "chat.completion.chunk" : "text_completion";
    auto chunk = [id, chunk_object, model, started_at](Json choices) {
      return "data: " + dump(Json{{"id", id}, {"object", chunk_object}, {"created", started_at}, {"model", model},
                                  {"choices", std::move(choices)}}) + "\n\n";
    };
    auto started = std::make_shared<bool>(false);
    res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider(
        "text/event-stream",
        [job, chat, chunk, started, &tok, id, chunk_object, model, started_at](size_t, httplib::DataSink& sink) {
          std::string out;
          if (!*started) {
            *started = true;
            if (chat)
              for (const auto& c : job->choices())
                out += chunk(Json::array({Json{{"index", c->index}, {"delta", {{"role", "assistant"}, {"content", ""}}},
                                               {"logprobs", nullptr}, {"finish_reason", nullptr}}}));
          }
          for (Choice* c : job->poll(std::chrono::milliseconds(200))) {
            const std::string text = c->out.substr(c->sent);
            const bool finished = !c->finish.empty();
            if (text.empty() && !finished) continue;  // held back (a stop string's start, a partial character)
            if (finished && (c->finish == "cancelled" || c->finish == "error")) {
              out += "data: " +
                     dump(c->finish == "error" ? error_body(500, kEngineFailed)
                                               : error_body(503, "the server stopped before the request finished")) +
                     "\n\n";
              c->sent = c->out.size();
              continue;
            }
            Json ch{{"index", c->index}};
            if (chat) ch["delta"] = text.empty() ? Json::object() : Json{{"content", text}};
            else ch["text"] = text;
            ch["logprobs"] = job->params().logprobs >= 0
                                 ? logprobs_json(tok, *c, c->lps_sent, c->tokens.size(), chat, c->sent)
                                 : Json();
            ch["finish_reason"] = finished ? Json(finish_json_value(c->finish)) : Json();
            out += chunk(Json::array({ch}));
            c->sent = c->out.size();
            c->lps_sent = c->tokens.size();
          }
          if (job->done()) {
            if (job->params().include_usage)
              out += "data: " + dump(Json{{"id", id}, {"object", chunk_object}, {"created", started_at}, {"model", model},
                                          {"choices", Json::array()}, {"usage", job->usage()}}) + "\n\n";
            out += "data: [DONE]\n\n";
          }
          if (!out.empty() && !sink.write(out.data(), out.size())) return false;  // the client left
          if (out.empty() && !sink.is_writable()) return false;
          if (job->done()) sink.done();
          return true;
        },
        // Ends the job's sequences still running (a client that left, a server that stops).
        [job](bool) { job->cancel_unfinished(); });
  };

  s.Post("/v1/completions", guarded([=, this](const httplib::Request& req, httplib::Response& res) {
    const Json b = parse_body(req);
    check_model(b);
    Params p;
    parse_params(b, false, p);
    if (!b.contains("prompt")) throw HttpError(400, "'prompt' is required");
    const Json& pr = b["prompt"];
    if (pr.is_array() && !pr.empty() && !pr[0].is_number_integer()) {
      if (pr.size() * size_t(p.n) > kMaxChoices)
        throw HttpError(400, fmt::format("{} prompts × n = {} asks for more than {} sequences", pr.size(), p.n, kMaxChoices));
      for (const Json& x : pr) p.prompts.push_back(prompt_tokens(x));
    } else {
      p.prompts.push_back(prompt_tokens(pr));
    }
    for (const auto& x : p.prompts)
      if (x.empty()) throw HttpError(400, "'prompt' is empty and the model adds no BOS token");
    auto job = std::make_shared<Job>(engine_, p);
    job->start();
    respond(job, false, req, res);
  }));

  s.Post("/v1/chat/completions", guarded([=, this, &tok](const httplib::Request& req, httplib::Response& res) {
    const Json b = parse_body(req);
    check_model(b);
    if (opt_.chat_template.empty())
      throw HttpError(400, "this model has no chat template; start the server with --chat-template NAME|FILE");
    Params p;
    parse_params(b, true, p);
    if (!has(b, "messages") || !b["messages"].is_array() || b["messages"].empty())
      throw HttpError(400, "'messages' must be a non-empty array");
    ChatRequest chat;
    static const char* const kRoles[] = {"system", "user", "assistant", "tool", "developer"};
    for (const Json& m : b["messages"]) {
      if (!m.is_object() || !m.contains("role") || !m["role"].is_string())
        throw HttpError(400, "each message must be an object with a string 'role'");
      const std::string role = m["role"].get<std::string>();
      if (std::find(std::begin(kRoles), std::end(kRoles), role) == std::end(kRoles))
        throw HttpError(400, fmt::format("unknown message role '{}' (system, user, assistant, tool, developer)", role));
      Json msg = m;
      const Json content = m.contains("content") ? m["content"] : Json();
      if (content.is_array()) {
        std::string text;
        for (const Json& part : content) {
          const bool typed = part.is_object() && part.contains("type") && part["type"].is_string();
          if (!typed || part["type"] != "text" || !part.contains("text") || !part["text"].is_string())
            throw HttpError(400, fmt::format("content part of type '{}' is not supported (text only)",
                                             typed ? part["type"].get<std::string>() : "?"));
          text += part["text"].get<std::string>();
        }
        msg["content"] = text;
      } else if (!content.is_string() && !(content.is_null() && role == "assistant")) {
        throw HttpError(400, fmt::format("a '{}' message needs a string 'content'", role));
      }
      chat.messages.push_back(msg);
    }
    if (has(b, "tools")) chat.tools = b["tools"];
    const Vocab& v = tok.vocab();
    if (v.bos >= 0) chat.bos_token = v.tokens[size_t(v.bos)];
    if (v.eos >= 0) chat.eos_token = v.tokens[size_t(v.eos)];
    const std::string text = apply_chat_template(opt_.chat_template, chat);
    // Templates that write the BOS token themselves must not get a second one.
    const bool has_bos = chat.bos_token && !chat.bos_token->empty() && text.rfind(*chat.bos_token, 0) == 0;
    p.prompts.push_back(encode(text, !has_bos));
    if (p.prompts[0].empty()) throw HttpError(400, "the chat template rendered an empty prompt");
    auto job = std::make_shared<Job>(engine_, p);
    job->start();
    respond(job, true, req, res);
  }));

  s.Get("/v1/models", guarded([this, created](const httplib::Request&, httplib::Response& res) {
    const ModelConfig& c = engine_.model().cfg;
    send_json(res, 200,
              Json{{"object", "list"},
                   {"data", Json::array({Json{{"id", opt_.model_id}, {"object", "model"}, {"created", created},
                                              {"owned_by", "lmpress"},
                                              {"meta", {{"n_ctx", engine_.ctx_size()}, {"n_vocab", c.n_vocab}}}}})}});
  }));

  s.Get("/health", [](const httplib::Request&, httplib::Response& res) { send_json(res, 200, Json{{"status", "ok"}}); });

  s.Post("/tokenize", guarded([&tok](const httplib::Request& req, httplib::Response& res) {
    const Json b = parse_body(req);
    if (!has(b, "content") || !b["content"].is_string()) throw HttpError(400, "'content' must be a string");
    const bool special = boolean(b, "add_special", false);
    const bool pieces = boolean(b, "with_pieces", false);
    const auto ids = tok.encode(b["content"].get<std::string>(), special, true);
    Json out = Json::array();
    for (int32_t id : ids) {
      if (pieces) out.push_back({{"id", id}, {"piece", tok.decode_token(id, true)}});
      else out.push_back(id);
    }
    send_json(res, 200, Json{{"tokens", out}});
  }));

  s.Post("/detokenize", guarded([&tok](const httplib::Request& req, httplib::Response& res) {
    const Json b = parse_body(req);
    if (!has(b, "tokens") || !b["tokens"].is_array()) throw HttpError(400, "'tokens' must be an array of token ids");
    std::vector<int32_t> ids;
    const int64_t n = int64_t(tok.vocab().size());
    for (const Json& t : b["tokens"]) {
      if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() >= n)
        throw HttpError(400, fmt::format("'tokens' must hold token ids in [0, {})", n));
      ids.push_back(int32_t(t.get<int64_t>()));
    }
    // As llama.cpp's detokenize: SentencePiece's dummy prefix (the space
    // encode put before the text) is not part of the text.
    std::string text = tok.decode(ids);
    const Vocab& v = tok.vocab();
    if (v.model == "llama" && v.add_space_prefix && !ids.empty() && ids[0] != v.bos && !text.empty() && text[0] == ' ')
      text.erase(0, 1);
    send_json(res, 200, Json{{"content", text}});
  }));

  s.Get("/metrics", guarded([this](const httplib::Request&, httplib::Response& res) {
    const EngineMetrics m = engine_.metrics();
    std::string out;
    auto metric = [&out](const char* name, const char* type, const char* help, double v) {
      out += fmt::format("# HELP {0} {1}\n# TYPE {0} {2}\n{0} {3}\n", name, help, type, v);
    };
    // llama-server's names (llamacpp:*) where it has the metric, so its dashboards read these.
    metric("llamacpp:prompt_tokens_total", "counter", "Number of prompt tokens processed.", double(m.prompt_tokens));
    metric("llamacpp:prompt_seconds_total", "counter", "Prompt process time", m.prompt_seconds);
    metric("llamacpp:tokens_predicted_total", "counter", "Number of generation tokens processed.",
           double(m.generated_tokens));
    metric("llamacpp:tokens_predicted_seconds_total", "counter", "Predict process time", m.generated_seconds);
    metric("llamacpp:n_decode_total", "counter", "Total number of batched forward passes.", double(m.steps));
    metric("llamacpp:n_busy_slots_per_decode", "gauge", "Average number of sequences per forward pass.",
           m.steps ? double(m.busy_sequences) / double(m.steps) : 0.0);
    metric("llamacpp:prompt_tokens_seconds", "gauge", "Average prompt throughput in tokens/s.",
           m.prompt_seconds > 0 ? double(m.prompt_tokens) / m.prompt_seconds : 0.0);
    metric("llamacpp:predicted_tokens_seconds", "gauge", "Average generation throughput in tokens/s.",
           m.generated_seconds > 0 ? double(m.generated_tokens) / m.generated_seconds : 0.0);
    metric("llamacpp:kv_cache_usage_ratio", "gauge", "KV-cache usage. 1 means 100 percent usage.",
           m.kv_blocks ? double(m.kv_blocks_used) / double(m.kv_blocks) : 0.0);
    metric("llamacpp:kv_cache_tokens", "gauge", "KV-cache positions held by requests (whole blocks).",
           double(m.kv_blocks_used * m.block_size));
    metric("llamacpp:requests_processing", "gauge", "Number of requests processing.", double(m.running));
    metric("llamacpp:requests_deferred", "gauge", "Number of requests deferred.", double(m.waiting));
    metric("lmpress:kv_blocks_total", "gauge", "Blocks in the paged KV pool.", double(m.kv_blocks));
    metric("lmpress:kv_cache_bytes_per_token", "gauge", "KV-cache bytes per position (all layers, K and V).",
           double(m.kv_bytes_per_token));
    metric("lmpress:kv_cache_bytes_total", "gauge", "Bytes of the paged KV pool.", double(m.kv_pool_bytes));
    metric("lmpress:kv_cache_staged_bytes", "gauge", "Bytes of KIVI's f16 rows held for open sequences.",
           double(m.kv_staged_bytes));
    metric("lmpress:kv_blocks_used", "gauge", "KV blocks held by requests.", double(m.kv_blocks_used));
    metric("lmpress:kv_blocks_cached", "gauge", "Free KV blocks kept for the prefix cache.", double(m.kv_cached_blocks));
    metric("lmpress:prefix_cache_queries_total", "counter", "Prompt tokens looked up in the prefix cache.",
           double(m.prefix_query_tokens));
    metric("lmpress:prefix_cache_hit_tokens_total", "counter", "Prompt tokens found in the prefix cache.",
           double(m.prefix_hit_tokens));
    metric("lmpress:requests_finished_total", "counter", "Requests that ran to their end.", double(m.requests_finished));
    metric("lmpress:requests_cancelled_total", "counter", "Requests cancelled (stop strings, clients gone, shutdown).",
           double(m.requests_cancelled));
    metric("lmpress:preemptions_total", "counter", "Requests preempted to be computed again.", double(m.preemptions));
    // vLLM's names for speculative decoding's counters.
    metric("lmpress:spec_decode_num_drafts_total", "counter", "Verification passes that checked drafts (--spec).",
           double(m.spec_passes));
    metric("lmpress:spec_decode_num_draft_tokens_total", "counter", "Tokens drafted (--spec).",
           double(m.spec_draft_tokens));
    metric("lmpress:spec_decode_num_accepted_tokens_total", "counter", "Drafted tokens the model accepted (--spec).",
           double(m.spec_accepted_tokens));
    res.set_content(out, "text/plain; version=0.0.4");
  }));
}

}  // namespace lmpress::serve
