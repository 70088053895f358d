// `lmpress serve` driven over real HTTP from outside (cpp-httplib's client):
// greedy output equal to `lmpress generate` alone and under load, streaming,
// stop strings, log probabilities, prefix caching, OpenAI-style errors, the
// API key, clients that leave, and SIGTERM.
#include <gtest/gtest.h>
#include <httplib.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "serve_process.h"
#include "test_util.h"

namespace lmpress {
namespace {

using Json = nlohmann::json;

std::string model() { return test::shared_path("models/lmp-8m"); }

#define NEED_MODEL() \
  if (!test::have_shared("models/lmp-8m/config.json")) GTEST_SKIP() << "no ../shared/models/lmp-8m"

struct Reply {
  int status = -1;
  Json body;
};

Reply post(int port, const std::string& path, const std::string& body, const std::string& key = "") {
  httplib::Client c("127.0.0.1", port);
  c.set_read_timeout(300, 0);
  httplib::Headers h;
  if (!key.empty()) h.emplace("Authorization", "Bearer " + key);
  auto r = c.Post(path.c_str(), h, body, "application/json");
  Reply out;
  if (!r) return out;
  out.status = r->status;
  out.body = Json::parse(r->body, nullptr, false);
  return out;
}

Reply get(int port, const std::string& path, const std::string& key = "") {
  httplib::Client c("127.0.0.1", port);
  httplib::Headers h;
  if (!key.empty()) h.emplace("Authorization", "Bearer " + key);
  auto r = c.Get(path.c_str(), h);
  Reply out;
  if (!r) return out;
  out.status = r->status;
  out.body = Json::parse(r->body, nullptr, false);
  return out;
}

// A /metrics value.
double metric(int port, const std::string& name) {
  httplib::Client c("127.0.0.1", port);
  auto r = c.Get("/metrics");
  if (!r) return -1;
  const std::string key = "\n" + name + " ";
  const size_t at = r->body.find(key);
  return at == std::string::npos ? -1 : std::stod(r->body.substr(at + key.size()));
}

// Waits until the server holds no request and no KV block.
bool drained(int port) {
  for (int i = 0; i < 200; i++) {
    if (metric(port, "llamacpp:requests_processing") == 0 && metric(port, "llamacpp:requests_deferred") == 0 &&
        metric(port, "lmpress:kv_blocks_used") == 0)
      return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

// lmpress generate's greedy text (what the server must reproduce).
std::string generate_text(const std::string& prompt, int n) {
  auto r = test::run_cli("generate " + model() + " -p '" + prompt + "' -n " + std::to_string(n) + " --ignore-eos --json -t 1");
  EXPECT_EQ(r.status, 0) << r.out;
  const size_t at = r.out.find('{');
  return Json::parse(r.out.substr(at == std::string::npos ? 0 : at))["text"].get<std::string>();
}

Json completion(const std::string& prompt, int n, Json extra = Json::object()) {
  Json b{{"prompt", prompt}, {"max_tokens", n}, {"temperature", 0}, {"ignore_eos", true}};
  b.update(extra);
  return b;
}

const std::vector<std::string> kPrompts = {
    "Once upon a time", "The little dog ran", "She looked at the sky and", "Tom had a red ball.",
    "In the morning the sun", "The cat", "Lily wanted to play with her friends in the park, but", "One day"};

TEST(ServeHttp, GreedyEqualsGenerateAloneAndEightAtOnce) {
  NEED_MODEL();
  test::ServeProcess srv({model(), "--parallel", "8", "-t", "2"});
  ASSERT_TRUE(srv.ok()) << srv.log();
  std::vector<std::string> want;
  std::vector<int> lens;
  for (size_t i = 0; i < kPrompts.size(); i++) {
    lens.push_back(8 + int(i) * 5);
    want.push_back(generate_text(kPrompts[i], lens[i]));
  }
  // Alone.
  Reply r = post(srv.port(), "/v1/completions", completion(kPrompts[6], lens[6]).dump());
  ASSERT_EQ(r.status, 200) << r.body.dump();
  EXPECT_EQ(r.body["choices"][0]["text"], want[6]);
  EXPECT_EQ(r.body["usage"]["completion_tokens"], lens[6]);
  EXPECT_EQ(r.body["choices"][0]["finish_reason"], "length");
  // Eight at once, of different lengths.
  std::vector<std::future<Reply>> futs;
  for (size_t i = 0; i < kPrompts.size(); i++)
    futs.push_back(std::async(std::launch::async, [&, i] {
      return post(srv.port(), "/v1/completions", completion(kPrompts[i], lens[i]).dump());
    }));
  for (size_t i = 0; i < futs.size(); i++) {
    Reply x = futs[i].get();
    ASSERT_EQ(x.status, 200) << x.body.dump();
    EXPECT_EQ(x.body["choices"][0]["text"], want[i]) << "prompt " << i;
    EXPECT_EQ(x.body["usage"]["completion_tokens"], lens[i]);
  }
  EXPECT_TRUE(drained(srv.port()));
  EXPECT_GE(metric(srv.port(), "llamacpp:tokens_predicted_total"), 8 + 40 + 8 * 5);
  EXPECT_EQ(srv.stop(), 0) << srv.log();
}

// A compressed KV cache in the same memory: --kv-memory 64 MiB holds ≥ 3× as
// many 4096-token requests with kivi4 as with f16 (its f16 rows for the
// --parallel sequences counted), and the server's greedy text with kivi4 is
// `generate --cache-type kivi4`'s, alone and four at once.
TEST(ServeHttp, KiviHoldsThreeTimesTheRequestsInTheSameMemory) {
  if (!test::have_shared("models/lmp-8m-w256/config.json")) GTEST_SKIP() << "no lmp-8m-w256";
  const std::string w256 = test::shared_path("models/lmp-8m-w256");
  auto full_requests = [&](const std::string& cache) {
    test::ServeProcess srv({w256, "-c", "4096", "--parallel", "4", "--kv-memory", "64", "-t", "1", "--cache-type", cache});
    EXPECT_TRUE(srv.ok()) << srv.log();
    const double blocks = metric(srv.port(), "lmpress:kv_blocks_total");
    const double bytes = metric(srv.port(), "lmpress:kv_cache_bytes_total");
    EXPECT_LE(bytes, 64.0 * (1 << 20)) << cache;
    EXPECT_EQ(srv.stop(), 0) << srv.log();
    const double block = cache == "f16" ? 16 : 64;  // KIVI blocks hold whole groups of 64
    return std::floor(blocks * block / 4096);
  };
  const double f16 = full_requests("f16"), kivi = full_requests("kivi4");
  EXPECT_EQ(f16, 4);  // 8 layers × 128 values × 2 (K, V) × 2 bytes a position
  EXPECT_GE(kivi, 3 * f16);
  // Greedy text through the KIVI cache, as generate computes it.
  test::ServeProcess srv({w256, "--parallel", "4", "-t", "2", "--cache-type", "kivi4", "--kv-group", "16"});
  ASSERT_TRUE(srv.ok()) << srv.log();
  std::vector<std::string> want;
  for (int i = 0; i < 4; i++) {
    auto r = test::run_cli("generate " + w256 + " -p '" + kPrompts[size_t(i)] + "' -n 40 --ignore-eos --json -t 1 " +
                           "--cache-type kivi4 --kv-group 16");
    ASSERT_EQ(r.status, 0) << r.out;
    want.push_back(Json::parse(r.out.substr(r.out.find('{')))["text"].get<std::string>());
  }
  std::vector<std::future<Reply>> futs;
  for (int i = 0; i < 4; i++)
    futs.push_back(std::async(std::launch::async, [&, i] {
      return post(srv.port(), "/v1/completions", completion(kPrompts[size_t(i)], 40 - 5 * i).dump());
    }));
  for (int i = 0; i < 4; i++) {
    Reply x = futs[size_t(i)].get();
    ASSERT_EQ(x.status, 200) << x.body.dump();
    const std::string text = x.body["choices"][0]["text"];
    EXPECT_EQ(text, want[size_t(i)].substr(0, text.size())) << "prompt " << i;  // a prefix of 40 tokens' text
    EXPECT_EQ(x.body["usage"]["completion_tokens"], 40 - 5 * i);
  }
  EXPECT_GT(metric(srv.port(), "lmpress:kv_cache_bytes_per_token"), 0);
  EXPECT_TRUE(drained(srv.port()));
  EXPECT_EQ(metric(srv.port(), "lmpress:kv_cache_staged_bytes"), 0);  // every request closed
  EXPECT_EQ(srv.stop(), 0) << srv.log();
}

// sink-window in the paged cache: requests run 150 tokens in a context of
// 64, each in at most 4 blocks of 16, with `generate --kv-policy`'s greedy text.
TEST(ServeHttp, SinkWindowRunsPastTheContext) {
  NEED_MODEL();
  const std::string policy = "sink-window:4,28";
  test::ServeProcess srv({model(), "-c", "64", "--parallel", "2", "-t", "2", "--kv-policy", policy});
  ASSERT_TRUE(srv.ok()) << srv.log();
  EXPECT_EQ(metric(srv.port(), "lmpress:kv_blocks_total"), 8);  // 2 requests of 4 blocks
  // The second prompt (58 tokens) is longer than the cache holds (4 + 28 + 15): it is computed in steps that evict.
  std::string long_prompt;
  for (int i = 0; i < 6; i++) long_prompt += std::string(i ? " " : "") + kPrompts[size_t(i)];
  long_prompt += " Lily wanted to play with her friends";
  const std::vector<std::string> prompts = {kPrompts[0], long_prompt};
  std::vector<std::string> want;
  for (int i = 0; i < 2; i++) {
    auto r = test::run_cli("generate " + model() + " -p '" + prompts[size_t(i)] + "' -n 150 -c 64 --ignore-eos --json -t 1 " +
                           "--kv-policy " + policy);
    ASSERT_EQ(r.status, 0) << r.out;
    want.push_back(Json::parse(r.out.substr(r.out.find('{')))["text"].get<std::string>());
  }
  std::vector<std::future<Reply>> futs;
  for (int i = 0; i < 2; i++)
    futs.push_back(std::async(std::launch::async,
                              [&, i] { return post(srv.port(), "/v1/completions", completion(prompts[size_t(i)], 150).dump()); }));
  for (int i = 0; i < 2; i++) {
    Reply x = futs[size_t(i)].get();
    ASSERT_EQ(x.status, 200) << x.body.dump();
    EXPECT_EQ(x.body["choices"][0]["text"], want[size_t(i)]) << "prompt " << i;
    EXPECT_EQ(x.body["usage"]["completion_tokens"], 150);
  }
  EXPECT_EQ(metric(srv.port(), "lmpress:preemptions_total"), 0);
  EXPECT_TRUE(drained(srv.port()));
  EXPECT_EQ(srv.stop(), 0) << srv.log();
  test::expect_cli_error("serve " + model() + " --port 0 --kv-policy h2o:64", "--kv-policy h2o:64,32: serve evicts with sink-window only");
  test::expect_cli_error("serve " + model() + " --port 0 --kv-policy sink-window:4,28 --spec ngram", "with --spec");
}

// With speculative decoding in the engine's steps (prompt lookup, and the
// model with a block skipped): the same greedy text for 4 requests at once,
// with drafts verified and counted in /metrics.
TEST(ServeHttp, SpeculativeStepsGiveTheSameGreedyText) {
  NEED_MODEL();
  std::vector<std::string> want;
  for (size_t i = 0; i < 4; i++) want.push_back(generate_text(kPrompts[i], 40));
  for (const char* spec : {"ngram", "self:skip:3"}) {
    SCOPED_TRACE(spec);
    test::ServeProcess srv({model(), "--parallel", "4", "-t", "2", "--spec", spec, "--draft-max", "3", "--draft-p-min",
                            "0.2"});
    ASSERT_TRUE(srv.ok()) << srv.log();
    std::vector<std::future<Reply>> futs;
    for (size_t i = 0; i < 4; i++)
      futs.push_back(std::async(std::launch::async, [&, i] {
        return post(srv.port(), "/v1/completions", completion(kPrompts[i], 40).dump());
      }));
    for (size_t i = 0; i < futs.size(); i++) {
      Reply x = futs[i].get();
      ASSERT_EQ(x.status, 200) << x.body.dump();
      EXPECT_EQ(x.body["choices"][0]["text"], want[i]) << "prompt " << i;
      EXPECT_EQ(x.body["usage"]["completion_tokens"], 40);
    }
    EXPECT_TRUE(drained(srv.port()));
    const double drafted = metric(srv.port(), "lmpress:spec_decode_num_draft_tokens_total");
    const double accepted = metric(srv.port(), "lmpress:spec_decode_num_accepted_tokens_total");
    EXPECT_GT(drafted, 0);
    EXPECT_GT(accepted, 0);
    EXPECT_LE(accepted, drafted);
    EXPECT_EQ(metric(srv.port(), "llamacpp:tokens_predicted_total"), 4 * 40);
    EXPECT_EQ(srv.stop(), 0) << srv.log();
  }
}

// Server-sent events of one response: the JSON of each `data:` line, and whether [DONE] ended it.
struct Sse {
  std::vector<Json> events;
  bool done = false;
  int status = -1;
};

Sse stream(int port, const std::string& path, const Json& body, size_t stop_after = 0) {
  httplib::Client c("127.0.0.1", port);
  c.set_read_timeout(300, 0);
  Sse s;
  std::string buf;
  httplib::Request req;
  req.method = "POST";
  req.path = path;
  req.body = body.dump();
  req.set_header("Content-Type", "application/json");
  req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
    buf.append(data, n);
    size_t at;
    while ((at = buf.find("\n\n")) != std::string::npos) {
      std::string ev = buf.substr(0, at);
      buf.erase(0, at + 2);
      if (ev.rfind("data: ", 0) != 0) continue;
      ev = ev.substr(6);
      if (ev == "[DONE]") s.done = true;
      else s.events.push_back(Json::parse(ev));
    }
    return stop_after == 0 || s.events.size() < stop_after;  // false: hang up
  };
  auto r = c.send(req);
  if (r) s.status = r->status;
  return s;
}

TEST(ServeHttp, StreamsTheSameTextAsOneBody) {
  NEED_MODEL();
  test::ServeProcess srv({model(), "-t", "2", "--chat-template", "chatml"});
  ASSERT_TRUE(srv.ok()) << srv.log();
  const Json b = completion(kPrompts[0], 24);
  Reply whole = post(srv.port(), "/v1/completions", b.dump());
  ASSERT_EQ(whole.status, 200);
  Json sb = b;
  sb["stream"] = true;
  sb["stream_options"] = {{"include_usage", true}};
  Sse s = stream(srv.port(), "/v1/completions", sb);
  ASSERT_TRUE(s.done);
  std::string text;
  for (const Json& e : s.events)
    if (!e["choices"].empty()) text += e["choices"][0]["text"].get<std::string>();
  EXPECT_EQ(text, whole.body["choices"][0]["text"]);
  ASSERT_GE(s.events.size(), 2u);
  EXPECT_EQ(s.events[s.events.size() - 2]["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(s.events.back()["usage"]["completion_tokens"], 24);

  // Chat: the first chunk names the role; the deltas join to the body's content.
  Json chat{{"messages", {{{"role", "system"}, {"content", "Be brief."}}, {{"role", "user"}, {"content", "Tell a story."}}}},
            {"max_tokens", 16}, {"temperature", 0}};
  Reply cw = post(srv.port(), "/v1/chat/completions", chat.dump());
  ASSERT_EQ(cw.status, 200) << cw.body.dump();
  EXPECT_EQ(cw.body["object"], "chat.completion");
  chat["stream"] = true;
  Sse cs = stream(srv.port(), "/v1/chat/completions", chat);
  ASSERT_TRUE(cs.done);
  ASSERT_FALSE(cs.events.empty());
  EXPECT_EQ(cs.events[0]["choices"][0]["delta"]["role"], "assistant");
  std::string content;
  for (const Json& e : cs.events)
    if (e["choices"][0]["delta"].contains("content")) content += e["choices"][0]["delta"]["content"].get<std::string>();
  EXPECT_EQ(content, cw.body["choices"][0]["message"]["content"]);
  EXPECT_TRUE(drained(srv.port()));
}

TEST(ServeHttp, StopStringsLogprobsAndN) {
  NEED_MODEL();
  test::ServeProcess srv({model(), "-t", "2"});
  ASSERT_TRUE(srv.ok()) << srv.log();
  const std::string full = post(srv.port(), "/v1/completions", completion(kPrompts[1], 32).dump())
                               .body["choices"][0]["text"].get<std::string>();
  ASSERT_GT(full.size(), 20u);
  const std::string stop = full.substr(10, 4);
  Reply r = post(srv.port(), "/v1/completions", completion(kPrompts[1], 32, {{"stop", {stop}}}).dump());
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.body["choices"][0]["text"], full.substr(0, full.find(stop)));
  EXPECT_EQ(r.body["choices"][0]["finish_reason"], "stop");

  // Greedy picks the most likely token: its logprob is the first alternative's.
  Reply lp = post(srv.port(), "/v1/completions", completion(kPrompts[1], 6, {{"logprobs", 3}}).dump());
  ASSERT_EQ(lp.status, 200);
  const Json& l = lp.body["choices"][0]["logprobs"];
  ASSERT_EQ(l["token_logprobs"].size(), 6u);
  for (size_t i = 0; i < 6; i++) {
    ASSERT_EQ(l["top_logprobs"][i].size(), 3u);
    double best = -1e9;
    for (auto& [tok, v] : l["top_logprobs"][i].items()) best = std::max(best, v.get<double>());
    EXPECT_NEAR(l["token_logprobs"][i].get<double>(), best, 1e-5);
    EXPECT_LE(l["token_logprobs"][i].get<double>(), 0.0);
  }
  // n = 3 samples at temperature 1: three choices, indexed.
  Reply n3 = post(srv.port(), "/v1/completions",
                  Json{{"prompt", kPrompts[2]}, {"max_tokens", 8}, {"n", 3}, {"seed", 7}}.dump());
  ASSERT_EQ(n3.status, 200);
  ASSERT_EQ(n3.body["choices"].size(), 3u);
  for (int i = 0; i < 3; i++) EXPECT_EQ(n3.body["choices"][i]["index"], i);
  EXPECT_TRUE(drained(srv.port()));
}

TEST(ServeHttp, SecondRequestWithTheSamePrefixIsCached) {
  NEED_MODEL();
  test::ServeProcess srv({model(), "-t", "2"});
  ASSERT_TRUE(srv.ok()) << srv.log();
  Json ids = Json::array();
  for (int i = 0; i < 200; i++) ids.push_back(100 + (i * 37) % 900);
  Json b{{"prompt", ids}, {"max_tokens", 4}, {"temperature", 0}};
  Reply a = post(srv.port(), "/v1/completions", b.dump());
  Reply c = post(srv.port(), "/v1/completions", b.dump());
  ASSERT_EQ(a.status, 200);
  ASSERT_EQ(c.status, 200);
  EXPECT_EQ(a.body["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
  EXPECT_EQ(c.body["usage"]["prompt_tokens_details"]["cached_tokens"], 192);  // 12 full blocks of 16
  EXPECT_EQ(a.body["choices"][0]["text"], c.body["choices"][0]["text"]);
  EXPECT_GE(metric(srv.port(), "lmpress:prefix_cache_hit_tokens_total"), 192);
}

TEST(ServeHttp, BadRequestsGetOpenAiErrorsAndTheServerStaysUp) {
  NEED_MODEL();
  test::ServeProcess srv({model(), "-t", "1", "--chat-template", "chatml"});
  ASSERT_TRUE(srv.ok()) << srv.log();
  const int p = srv.port();
  Json long_prompt = Json::array();
  for (int i = 0; i < 300; i++) long_prompt.push_back(5);
  const std::vector<std::pair<std::string, int>> cases = {
      {"{not json", 400},
      {R"({"prompt": "hi", "max_tokens": "ten"})", 400},
      {R"({"prompt": "hi", "max_tokens": -3})", 400},
      {R"({"prompt": "hi", "temperature": -0.5})", 400},
      {R"({"prompt": "hi", "top_p": 1.5})", 400},
      {R"({"prompt": 42})", 400},
      {R"({"max_tokens": 3})", 400},
      {R"({"prompt": "hi", "model": "gpt-4"})", 404},
      {R"([1, 2])", 400},
      {Json{{"prompt", long_prompt}}.dump(), 413},
      // Past what the context could hold in any tokens: refused before tokenizing.
      {Json{{"prompt", std::string(4 << 20, 'a')}}.dump(), 413},
      {R"({"prompt": "hi", "x": )" + std::string(200000, '[') + std::string(200000, ']') + "}", 400},
      {Json{{"prompt", "hi"}, {"stop", std::string(300, 'x')}}.dump(), 400},
      {Json{{"prompt", Json::array({"a", "b", "c", "d", "e", "f", "g", "h", "i"})}, {"n", 16}}.dump(), 400},
  };
  for (const auto& [body, status] : cases) {
    Reply r = post(p, "/v1/completions", body);
    EXPECT_EQ(r.status, status) << body;
    EXPECT_TRUE(r.body["error"]["message"].is_string()) << body << " -> " << r.body.dump();
    EXPECT_EQ(r.body["error"]["code"], status);
  }
  const std::vector<std::pair<std::string, int>> chat_cases = {
      {R"({"messages": []})", 400},
      {R"({"messages": [{"role": "wizard", "content": "hi"}]})", 400},
      {R"({"messages": [{"role": "user", "content": 5}]})", 400},
      {R"({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]})", 400},
      {R"({"messages": "hello"})", 400},
      {R"({"messages": [{"role": "user", "content": [{"type": 5, "text": "hi"}]}]})", 400},
      {R"({"messages": [{"role": "user", "content": "hi", "name": )" + std::string(100000, '[') +
           std::string(100000, ']') + "}]}",
       400},
  };
  for (const auto& [body, status] : chat_cases) {
    Reply r = post(p, "/v1/chat/completions", body);
    EXPECT_EQ(r.status, status) << body;
    EXPECT_TRUE(r.body["error"]["message"].is_string()) << body;
  }
  EXPECT_EQ(get(p, "/v1/nothing").status, 404);
  EXPECT_EQ(post(p, "/detokenize", R"({"tokens": [1, 99999]})").status, 400);
  Reply t = post(p, "/tokenize", R"({"content": "Once upon a time"})");
  ASSERT_EQ(t.status, 200);
  Reply d = post(p, "/detokenize", Json{{"tokens", t.body["tokens"]}}.dump());
  EXPECT_EQ(d.body["content"], "Once upon a time");
  Reply models = get(p, "/v1/models");
  ASSERT_EQ(models.status, 200);
  EXPECT_EQ(models.body["data"][0]["id"], "lmp-8m");
  // Still serving, and nothing held.
  EXPECT_EQ(post(p, "/v1/completions", completion("Once", 3).dump()).status, 200);
  EXPECT_TRUE(drained(p));
  EXPECT_EQ(srv.stop(), 0);
}

TEST(ServeHttp, ApiKeyGuardsEverythingButHealth) {
  NEED_MODEL();
  test::ServeProcess srv({model(), "-t", "1", "--api-key", "sesame"});
  ASSERT_TRUE(srv.ok()) << srv.log();
  EXPECT_EQ(get(srv.port(), "/health").status, 200);
  Reply no = get(srv.port(), "/v1/models");
  EXPECT_EQ(no.status, 401);
  EXPECT_EQ(no.body["error"]["type"], "authentication_error");
  EXPECT_EQ(get(srv.port(), "/v1/models", "wrong").status, 401);
  EXPECT_EQ(get(srv.port(), "/v1/models", "sesame").status, 200);
  EXPECT_EQ(post(srv.port(), "/v1/completions", completion("Once", 2).dump()).status, 401);
  EXPECT_EQ(post(srv.port(), "/v1/completions", completion("Once", 2).dump(), "sesame").status, 200);
  EXPECT_EQ(get(srv.port(), "/metrics").status, 401);
}

TEST(ServeHttp, ClientsThatLeaveAreCancelledAndSigtermExitsZero) {
  NEED_MODEL();
  // Past the trained context of 256, so that a request runs long enough to be interrupted.
  test::ServeProcess srv({model(), "-t", "2", "--shutdown-timeout", "2", "--ctx-size", "4096"});
  ASSERT_TRUE(srv.ok()) << srv.log();
  // A stream dropped after two events: its sequence ends, its blocks come back.
  Json b = completion(kPrompts[0], 4000);
  b["stream"] = true;
  Sse s = stream(srv.port(), "/v1/completions", b, 2);
  EXPECT_FALSE(s.done);
  EXPECT_TRUE(drained(srv.port()));
  EXPECT_GE(metric(srv.port(), "lmpress:requests_cancelled_total"), 1);
  // A client that sends a request for one body and leaves before it comes: cancelled too, long before
  // its 4000 tokens (the predicted-token counter shows how far it got).
  const double predicted = metric(srv.port(), "llamacpp:tokens_predicted_total");
  const double cancelled = metric(srv.port(), "lmpress:requests_cancelled_total");
  {
    httplib::Client c("127.0.0.1", srv.port());
    c.set_read_timeout(0, 300000);  // gives up after 0.3 s and closes its socket
    EXPECT_FALSE(c.Post("/v1/completions", completion(kPrompts[1], 4000).dump(), "application/json"));
  }
  EXPECT_TRUE(drained(srv.port()));
  EXPECT_EQ(metric(srv.port(), "lmpress:requests_cancelled_total"), cancelled + 1);
  EXPECT_LT(metric(srv.port(), "llamacpp:tokens_predicted_total") - predicted, 2000);
  // SIGTERM with a long request in flight: aborted within the bound, exit 0.
  auto inflight = std::async(std::launch::async, [&] { return stream(srv.port(), "/v1/completions", b); });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(srv.stop(20), 0) << srv.log();
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 15.0);
  inflight.get();
}

}  // namespace
}  // namespace lmpress
