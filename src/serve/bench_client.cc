#include "serve/bench_client.h"

#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cmath>
#include <mutex>
#include <thread>

#include "core/error.h"

namespace lmpress::serve {

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

[[noreturn]] void not_loopback(const std::string& url) {
  fail("bench-serve: URL '{}' is not loopback (only 127.0.0.1, localhost, [::1] are allowed)", url);
}

std::string lower(std::string s) {
  for (auto& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// The message of an OpenAI error body, else the body's start.
std::string error_message(const std::string& body) {
  try {
    const auto j = nlohmann::json::parse(body);
    if (j.contains("error")) {
      const auto& e = j["error"];
      if (e.is_object() && e.contains("message") && e["message"].is_string()) return e["message"].get<std::string>();
      if (e.is_string()) return e.get<std::string>();
      return e.dump();
    }
  } catch (const nlohmann::json::exception&) {
  }
  std::string s = body.substr(0, 200);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  return s;
}

time_t whole_seconds(double s) { return time_t(std::ceil(std::max(s, 1.0))); }

void set_timeouts(httplib::Client& cli, double timeout_s) {
  cli.set_connection_timeout(std::min<time_t>(whole_seconds(timeout_s), 10));
  cli.set_read_timeout(whole_seconds(timeout_s));
  cli.set_write_timeout(whole_seconds(timeout_s));
}

nlohmann::json number_or_null(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }

nlohmann::ordered_json summary_json(const Summary& s, bool with_mean) {
  nlohmann::ordered_json j{{"p50", number_or_null(s.p50)}, {"p95", number_or_null(s.p95)},
                           {"p99", number_or_null(s.p99)}};
  if (with_mean) j["mean"] = number_or_null(s.mean);
  return j;
}

}  // namespace

LoopbackUrl parse_loopback_url(const std::string& url) {
  const std::string scheme = "http://";
  if (lower(url.substr(0, scheme.size())) != scheme) not_loopback(url);
  const std::string rest = url.substr(scheme.size());
  const std::string authority = rest.substr(0, rest.find_first_of("/?#"));
  if (authority.find('@') != std::string::npos) not_loopback(url);  // user info: http://127.0.0.1@host
  LoopbackUrl out;
  std::string port;
  if (!authority.empty() && authority.front() == '[') {
    const size_t close = authority.find(']');
    if (close == std::string::npos) not_loopback(url);
    out.host = authority.substr(1, close - 1);
    const std::string after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') not_loopback(url);
      port = after.substr(1);
      if (port.empty()) not_loopback(url);
    }
    if (out.host != "::1") not_loopback(url);
  } else {
    const size_t colon = authority.find(':');
    out.host = lower(authority.substr(0, colon));
    if (colon != std::string::npos) {
      port = authority.substr(colon + 1);
      if (port.empty()) not_loopback(url);
    }
    if (out.host != "127.0.0.1" && out.host != "localhost") not_loopback(url);
  }
  if (!port.empty()) {
    if (port.size() > 5 || !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; }))
      fail("bench-serve: URL '{}': port '{}' is not a number in 1..65535", url, port);
    out.port = std::stoi(port);
    if (out.port < 1 || out.port > 65535) fail("bench-serve: URL '{}': port '{}' is not a number in 1..65535", url, port);
  }
  return out;
}

std::vector<int32_t> bench_prompt(uint64_t seed, int64_t index, int64_t prompt_len, int64_t shared_prefix) {
  std::vector<int32_t> ids(size_t(std::max<int64_t>(prompt_len, 0)));
  const uint64_t s = splitmix64(seed);
  for (int64_t p = 0; p < prompt_len; ++p) {
    const uint64_t who = p < shared_prefix ? ~uint64_t(0) : uint64_t(index);
    const uint64_t h = splitmix64(s ^ splitmix64(who * 0x100000001b3ULL + uint64_t(p)));
    ids[size_t(p)] = int32_t(100 + h % 900);
  }
  return ids;
}

nlohmann::ordered_json completion_request(const std::string& model, const std::vector<int32_t>& prompt,
                                          int64_t max_tokens) {
  return {{"model", model},
          {"prompt", prompt},
          {"max_tokens", max_tokens},
          {"temperature", 0},
          {"stream", true},
          {"ignore_eos", true},
          {"stream_options", {{"include_usage", true}}}};
}

void CompletionStream::feed(std::string_view bytes, double t_ms) {
  events_.clear();
  parser_.feed(bytes, events_);
  for (const auto& e : events_) event(e, t_ms);
}

void CompletionStream::finish(double t_ms, RequestResult& r) {
  events_.clear();
  parser_.finish(events_);
  for (const auto& e : events_) event(e, t_ms);
  r.latency_ms = t_ms;
  r.ttft_ms = first_ms_;
  r.itl_ms = std::move(itl_ms_);
  r.content_chunks = chunks_;
  r.completion_tokens = usage_tokens_ >= 0 ? usage_tokens_ : chunks_;
  if (!error_.empty()) {
    r.ok = false;
    r.error = error_;
  } else if (!parser_.done()) {
    r.ok = false;
    r.error = "the stream ended without data: [DONE]";
  } else {
    r.ok = true;
  }
}

void CompletionStream::event(const SseEvent& e, double t_ms) {
  if (!error_.empty()) return;
  if (e.field != "data") {
    error_ = "stream error: " + error_message(e.data);
    return;
  }
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(e.data);
  } catch (const nlohmann::json::exception&) {
    error_ = "malformed event in the stream: " + e.data.substr(0, 200);
    return;
  }
  if (!j.is_object()) {
    error_ = "malformed event in the stream: " + e.data.substr(0, 200);
    return;
  }
  if (j.contains("error")) {
    error_ = "stream error: " + error_message(e.data);
    return;
  }
  bool content = false;
  if (j.contains("choices") && j["choices"].is_array() && !j["choices"].empty()) {
    const auto& c = j["choices"][0];
    if (c.is_object()) {
      if (c.contains("text") && c["text"].is_string() && !c["text"].get_ref<const std::string&>().empty())
        content = true;
      else if (c.contains("delta") && c["delta"].is_object() && c["delta"].contains("content") &&
               c["delta"]["content"].is_string() && !c["delta"]["content"].get_ref<const std::string&>().empty())
        content = true;
    }
  }
  if (content) {
    if (first_ms_ < 0) first_ms_ = t_ms;
    else itl_ms_.push_back(t_ms - last_ms_);
    last_ms_ = t_ms;
    ++chunks_;
  }
  if (j.contains("usage") && j["usage"].is_object() && j["usage"].contains("completion_tokens") &&
      j["usage"]["completion_tokens"].is_number_integer())
    usage_tokens_ = j["usage"]["completion_tokens"].get<int64_t>();
}

std::string first_model_id(const std::string& host, int port, const std::string& api_key, double timeout_s) {
  httplib::Client cli(host, port);
  set_timeouts(cli, timeout_s);
  if (!api_key.empty()) cli.set_bearer_token_auth(api_key.c_str());
  auto res = cli.Get("/v1/models");
  if (!res || res->status != 200) return "default";
  try {
    const auto j = nlohmann::json::parse(res->body);
    const auto& id = j.at("data").at(0).at("id");
    if (id.is_string() && !id.get_ref<const std::string&>().empty()) return id.get<std::string>();
  } catch (const nlohmann::json::exception&) {
  }
  return "default";
}

namespace {

RequestResult send_one(httplib::Client& cli, const BenchOptions& o, const std::string& model, int64_t index) {
  const std::string body = completion_request(model, bench_prompt(o.seed, index, o.prompt_len, o.shared_prefix),
                                              o.max_tokens)
                               .dump();
  httplib::Request req;
  req.method = "POST";
  req.path = "/v1/completions";
  req.headers = {{"Content-Type", "application/json"}, {"Accept", "text/event-stream"}};
  req.body = body;
  int status = -1;
  std::string error_body;
  bool timed_out = false;
  CompletionStream stream;
  const auto t0 = Clock::now();
  req.response_handler = [&](const httplib::Response& res) {
    status = res.status;
    return true;
  };
  req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
    const double t = ms_since(t0);
    if (status == 200)
      stream.feed(std::string_view(data, n), t);
    else if (error_body.size() < 4096)
      error_body.append(data, std::min(n, 4096 - error_body.size()));
    if (t > o.timeout_s * 1000.0) {
      timed_out = true;
      return false;
    }
    return true;
  };
  auto res = cli.send(req);
  const double t_end = ms_since(t0);
  RequestResult r;
  r.latency_ms = t_end;
  if (timed_out) {
    r.error = fmt::format("timed out after {} s", o.timeout_s);
  } else if (!res && t_end >= o.timeout_s * 1000.0) {
    r.error = fmt::format("timed out after {} s ({})", o.timeout_s, httplib::to_string(res.error()));
  } else if (!res) {
    const bool connect = res.error() == httplib::Error::Connection;
    r.error = fmt::format("{} http://{}:{}/v1/completions (httplib: {})",
                          connect ? "could not connect to" : "connection error on",
                          o.host.find(':') != std::string::npos ? "[" + o.host + "]" : o.host, o.port,
                          httplib::to_string(res.error()));
  } else if (res->status != 200) {
    r.error = fmt::format("HTTP {}: {}", res->status, error_message(error_body.empty() ? res->body : error_body));
  } else {
    stream.finish(t_end, r);
  }
  return r;
}

}  // namespace

BenchReport run_bench(const BenchOptions& o) {
  if (o.requests < 1 || o.requests > kMaxBenchRequests)
    fail("bench-serve: --requests {} is not in 1..{}", o.requests, kMaxBenchRequests);
  if (o.concurrency < 1 || o.concurrency > kMaxBenchConcurrency)
    fail("bench-serve: --concurrency {} is not in 1..{}", o.concurrency, kMaxBenchConcurrency);
  if (o.prompt_len < 1) fail("bench-serve: --prompt-len {} is not at least 1", o.prompt_len);
  if (o.max_tokens < 1) fail("bench-serve: --max-tokens {} is not at least 1", o.max_tokens);
  if (o.shared_prefix < 0 || o.shared_prefix > o.prompt_len)
    fail("bench-serve: --shared-prefix {} is not in 0..--prompt-len ({})", o.shared_prefix, o.prompt_len);
  if (!(o.timeout_s > 0)) fail("bench-serve: --timeout {} is not positive", o.timeout_s);

  BenchReport rep;
  rep.requests = o.requests;
  rep.concurrency = o.concurrency;
  rep.prompt_len = o.prompt_len;
  rep.max_tokens = o.max_tokens;
  rep.model = o.model.empty() ? first_model_id(o.host, o.port, o.api_key, o.timeout_s) : o.model;

  std::vector<RequestResult> results(size_t(o.requests));
  std::atomic<int64_t> next{0};
  std::mutex mu;
  int64_t ended = 0;
  std::string first_error;
  const int threads = int(std::min<int64_t>(o.concurrency, o.requests));
  const auto t0 = Clock::now();
  {
    std::vector<std::thread> pool;
    pool.reserve(size_t(threads));
    for (int t = 0; t < threads; ++t)
      pool.emplace_back([&] {
        httplib::Client cli(o.host, o.port);
        set_timeouts(cli, o.timeout_s);
        // A connection per request: reusing one after a streamed response made 1 to 3 of 16 requests fail
        // with a read error against llama-server (httplib 0.11's client), and a loopback connect costs
        // well under a millisecond.
        cli.set_keep_alive(false);
        if (!o.api_key.empty()) cli.set_bearer_token_auth(o.api_key.c_str());
        for (int64_t i; (i = next.fetch_add(1)) < o.requests;) {
          RequestResult r = send_one(cli, o, rep.model, i);
          std::lock_guard<std::mutex> lock(mu);
          if (!r.ok && first_error.empty()) first_error = fmt::format("request {}: {}", i, r.error);
          results[size_t(i)] = std::move(r);
          ++ended;
          if (o.on_request_done) o.on_request_done(ended);
        }
      });
    for (auto& th : pool) th.join();
  }
  rep.duration_s = std::chrono::duration<double>(Clock::now() - t0).count();

  std::vector<double> ttft, itl, latency;
  for (const auto& r : results) {
    if (!r.ok) {
      ++rep.errors;
      continue;
    }
    rep.prompt_tokens += o.prompt_len;
    rep.completion_tokens += r.completion_tokens;
    if (r.ttft_ms >= 0) ttft.push_back(r.ttft_ms);
    itl.insert(itl.end(), r.itl_ms.begin(), r.itl_ms.end());
    latency.push_back(r.latency_ms);
  }
  rep.first_error = first_error;
  if (rep.duration_s > 0) {
    rep.prompt_tokens_per_s = double(rep.prompt_tokens) / rep.duration_s;
    rep.gen_tokens_per_s = double(rep.completion_tokens) / rep.duration_s;
  }
  rep.ttft_ms = summarize(ttft);
  rep.itl_ms = summarize(itl);
  rep.latency_ms = summarize(latency);
  return rep;
}

nlohmann::ordered_json to_json(const BenchReport& r) {
  return {{"requests", r.requests},
          {"errors", r.errors},
          {"concurrency", r.concurrency},
          {"prompt_len", r.prompt_len},
          {"max_tokens", r.max_tokens},
          {"model", r.model},
          {"duration_s", r.duration_s},
          {"prompt_tokens", r.prompt_tokens},
          {"completion_tokens", r.completion_tokens},
          {"prompt_tokens_per_s", r.prompt_tokens_per_s},
          {"gen_tokens_per_s", r.gen_tokens_per_s},
          {"ttft_ms", summary_json(r.ttft_ms, true)},
          {"itl_ms", summary_json(r.itl_ms, true)},
          {"latency_ms", summary_json(r.latency_ms, false)},
          {"first_error", r.first_error.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(r.first_error)}};
}

}  // namespace lmpress::serve
