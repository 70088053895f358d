// The load generator end to end against a fake OpenAI streaming server run in
// this process (httplib on 127.0.0.1, a free port): known delays, token counts
// and failures, and what bench-serve reports for them.
#include "serve/bench_client.h"

#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <set>
#include <thread>

#include "core/error.h"
#include "serve/http_json.h"
#include "test_util.h"

namespace lmpress::serve {
namespace {

using namespace std::chrono_literals;

// A fake /v1/completions: an empty-text chunk at once, then after
// `first_delay` the completion in chunks of `tokens_per_chunk` tokens, `gap`
// apart, then a usage chunk and [DONE]. Request number k (in arrival order)
// gets a 500 when fail_every > 0 and k % fail_every == fail_every - 1.
struct FakeServer {
  std::chrono::milliseconds first_delay{40}, gap{15};
  int tokens_per_chunk = 2;
  int fail_every = 0;
  bool send_done = true;
  bool send_usage = true;
  std::string api_key;

  httplib::Server srv;
  int port = 0;
  std::thread th;
  std::atomic<int> arrived{0}, in_flight{0}, max_in_flight{0};
  std::mutex mu;
  std::vector<std::vector<int>> prompts;
  std::set<std::string> models;
  std::vector<std::string> bad_requests;

  void start() {
    srv.set_tcp_nodelay(true);
    srv.Get("/v1/models", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(R"({"object":"list","data":[{"id":"fake-model","object":"model"}]})", "application/json");
    });
    srv.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) { complete(req, res); });
    port = srv.bind_to_any_port("127.0.0.1");
    ASSERT_GT(port, 0);
    th = std::thread([this] { srv.listen_after_bind(); });
    while (!srv.is_running()) std::this_thread::sleep_for(1ms);
  }
  ~FakeServer() {
    srv.stop();
    if (th.joinable()) th.join();
  }

  void complete(const httplib::Request& req, httplib::Response& res) {
    const int k = arrived++;
    if (!api_key.empty() && req.get_header_value("Authorization") != "Bearer " + api_key) {
      res.status = 401;
      res.set_content(error_body(401, "bad key").dump(), "application/json");
      return;
    }
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(req.body);
    } catch (const nlohmann::json::exception& e) {
      res.status = 400;
      res.set_content(error_body(400, e.what()).dump(), "application/json");
      return;
    }
    {
      std::lock_guard<std::mutex> lock(mu);
      if (!(j.value("stream", false) && j.value("ignore_eos", false) && j.value("temperature", -1) == 0 &&
            j["stream_options"].value("include_usage", false) && j["prompt"].is_array()))
        bad_requests.push_back(req.body);
      prompts.push_back(j["prompt"].get<std::vector<int>>());
      models.insert(j.value("model", ""));
    }
    if (fail_every > 0 && k % fail_every == fail_every - 1) {
      res.status = 500;
      res.set_content(error_body(500, "fake failure " + std::to_string(k)).dump(), "application/json");
      return;
    }
    const int max_tokens = j.value("max_tokens", 1), prompt_len = int(j["prompt"].size());
    const int now = ++in_flight;
    for (int m = max_in_flight; now > m && !max_in_flight.compare_exchange_weak(m, now);) {
    }
    res.set_chunked_content_provider("text/event-stream", [this, max_tokens, prompt_len](size_t, httplib::DataSink& sink) {
      auto send = [&](const nlohmann::json& ev) {
        const std::string s = "data: " + ev.dump() + "\n\n";
        return sink.write(s.data(), s.size());
      };
      auto chunk = [](const std::string& text) {
        return nlohmann::json{{"object", "text_completion"}, {"choices", {{{"index", 0}, {"text", text}}}}};
      };
      send(chunk(""));
      std::this_thread::sleep_for(first_delay);
      for (int t = 0; t < max_tokens; t += tokens_per_chunk) {
        if (t > 0) std::this_thread::sleep_for(gap);
        std::string text;
        for (int i = t; i < std::min(max_tokens, t + tokens_per_chunk); ++i) text += " tok";
        send(chunk(text));
      }
      if (send_usage)
        send({{"choices", nlohmann::json::array()},
              {"usage", {{"prompt_tokens", prompt_len}, {"completion_tokens", max_tokens}}}});
      if (send_done) {
        const std::string done = "data: [DONE]\n\n";
        sink.write(done.data(), done.size());
      }
      --in_flight;
      sink.done();
      return true;
    });
  }
};

TEST(BenchServe, LoopbackUrls) {
  auto u = parse_loopback_url("http://127.0.0.1:8080");
  EXPECT_EQ(u.host, "127.0.0.1");
  EXPECT_EQ(u.port, 8080);
  u = parse_loopback_url("http://localhost:9/v1");
  EXPECT_EQ(u.host, "localhost");
  EXPECT_EQ(u.port, 9);
  u = parse_loopback_url("HTTP://[::1]:65535/");
  EXPECT_EQ(u.host, "::1");
  EXPECT_EQ(u.port, 65535);
  u = parse_loopback_url("http://LocalHost");
  EXPECT_EQ(u.port, 80);
  for (const char* bad : {"http://10.0.0.1:8080", "https://127.0.0.1:8080", "http://example.com:80",
                          "http://127.0.0.1@example.com:80", "http://[::2]:80", "http://127.0.0.2:80",
                          "127.0.0.1:8080", "http://[::1", "http://localhost.example.com", "ftp://localhost", ""})
    test::expect_error([&] { parse_loopback_url(bad); }, "is not loopback (only 127.0.0.1, localhost, [::1]");
  for (const char* bad : {"http://127.0.0.1:0", "http://127.0.0.1:65536", "http://127.0.0.1:80x", "http://127.0.0.1:"})
    EXPECT_THROW(parse_loopback_url(bad), Error) << bad;
}

TEST(BenchServe, PromptsAreDeterministicWithASharedPrefix) {
  const auto a = bench_prompt(7, 0, 64, 16), b = bench_prompt(7, 1, 64, 16), a2 = bench_prompt(7, 0, 64, 16);
  EXPECT_EQ(a, a2);
  ASSERT_EQ(a.size(), 64u);
  EXPECT_TRUE(std::equal(a.begin(), a.begin() + 16, b.begin()));
  int same = 0;
  for (size_t i = 16; i < 64; ++i) same += a[i] == b[i];
  EXPECT_LT(same, 8);
  for (int id : a) EXPECT_TRUE(id >= 100 && id < 1000) << id;
  EXPECT_NE(bench_prompt(8, 0, 64, 16), a);
  const auto body = completion_request("m", a, 5);
  EXPECT_EQ(body["prompt"].size(), 64u);
  EXPECT_EQ(body["max_tokens"], 5);
  EXPECT_EQ(body["stream"], true);
  EXPECT_EQ(body["ignore_eos"], true);
  EXPECT_EQ(body["stream_options"]["include_usage"], true);
}

TEST(BenchServe, CountsTokensErrorsAndLatencies) {
  FakeServer fake;
  fake.fail_every = 4;
  fake.api_key = "sekret";
  fake.start();
  BenchOptions o;
  o.port = fake.port;
  o.concurrency = 3;
  o.requests = 12;
  o.prompt_len = 32;
  o.shared_prefix = 8;
  o.max_tokens = 6;
  o.api_key = "sekret";
  o.timeout_s = 30;
  int64_t last_done = 0;
  o.on_request_done = [&](int64_t done) { last_done = done; };
  const BenchReport r = run_bench(o);
  EXPECT_EQ(last_done, 12);
  EXPECT_EQ(r.requests, 12);
  EXPECT_EQ(r.errors, 3);  // requests 3, 7 and 11 in arrival order
  EXPECT_NE(r.first_error.find("HTTP 500: fake failure "), std::string::npos) << r.first_error;
  EXPECT_EQ(r.model, "fake-model");
  EXPECT_EQ(r.prompt_tokens, 9 * 32);
  EXPECT_EQ(r.completion_tokens, 9 * 6);  // from usage: 3 chunks of 2 tokens each
  EXPECT_LE(fake.max_in_flight.load(), 3);
  EXPECT_GE(fake.max_in_flight.load(), 2);
  // TTFT at least the fake's delay before the first text (the empty chunk before it does not count).
  EXPECT_GE(r.ttft_ms.p50, 40.0);
  EXPECT_GE(percentile({r.ttft_ms.p50, r.ttft_ms.p95, r.ttft_ms.p99, r.ttft_ms.mean}, 0), 40.0);
  EXPECT_LT(r.ttft_ms.p50, 5000.0);
  // Two gaps of 15 ms per request (3 chunks with text).
  EXPECT_GE(r.itl_ms.p50, 10.0);
  EXPECT_GE(r.latency_ms.p50, 40.0 + 2 * 15.0 - 5.0);
  EXPECT_GT(r.gen_tokens_per_s, 0);
  EXPECT_NEAR(r.gen_tokens_per_s, 54.0 / r.duration_s, 1e-9);
  EXPECT_NEAR(r.prompt_tokens_per_s, 288.0 / r.duration_s, 1e-9);
  std::lock_guard<std::mutex> lock(fake.mu);
  EXPECT_TRUE(fake.bad_requests.empty()) << fake.bad_requests.front();
  EXPECT_EQ(fake.models, std::set<std::string>{"fake-model"});
  ASSERT_EQ(fake.prompts.size(), 12u);
  std::set<std::vector<int>> distinct(fake.prompts.begin(), fake.prompts.end());
  EXPECT_EQ(distinct.size(), 12u);
  for (const auto& p : fake.prompts) {
    ASSERT_EQ(p.size(), 32u);
    EXPECT_TRUE(std::equal(p.begin(), p.begin() + 8, fake.prompts[0].begin()));
  }
  const auto j = to_json(r);
  for (const char* k : {"requests", "errors", "concurrency", "prompt_len", "max_tokens", "duration_s",
                        "prompt_tokens_per_s", "gen_tokens_per_s", "ttft_ms", "itl_ms", "latency_ms", "first_error"})
    EXPECT_TRUE(j.contains(k)) << k;
  for (const char* k : {"p50", "p95", "p99", "mean"}) {
    EXPECT_TRUE(j["ttft_ms"][k].is_number()) << k;
    EXPECT_TRUE(j["itl_ms"][k].is_number()) << k;
  }
  EXPECT_FALSE(j["latency_ms"].contains("mean"));
}

TEST(BenchServe, ChunksCountWithoutUsageAndAModelGiven) {
  FakeServer fake;
  fake.send_usage = false;
  fake.tokens_per_chunk = 3;
  fake.first_delay = 5ms;
  fake.gap = 1ms;
  fake.start();
  BenchOptions o;
  o.port = fake.port;
  o.host = "localhost";
  o.concurrency = 8;
  o.requests = 5;  // fewer than the threads asked for
  o.prompt_len = 4;
  o.max_tokens = 7;  // chunks of 3, 3 and 1 tokens
  o.model = "mine";
  const BenchReport r = run_bench(o);
  EXPECT_EQ(r.errors, 0) << r.first_error;
  EXPECT_EQ(r.completion_tokens, 5 * 3);  // no usage: one per chunk with text
  EXPECT_TRUE(r.first_error.empty());
  EXPECT_TRUE(to_json(r)["first_error"].is_null());
  std::lock_guard<std::mutex> lock(fake.mu);
  EXPECT_EQ(fake.models, std::set<std::string>{"mine"});
}

TEST(BenchServe, StreamWithoutDoneIsAnError) {
  FakeServer fake;
  fake.send_done = false;
  fake.first_delay = 1ms;
  fake.gap = 1ms;
  fake.start();
  BenchOptions o;
  o.port = fake.port;
  o.concurrency = 2;
  o.requests = 4;
  o.prompt_len = 4;
  o.max_tokens = 2;
  const BenchReport r = run_bench(o);
  EXPECT_EQ(r.errors, 4);
  EXPECT_NE(r.first_error.find("without data: [DONE]"), std::string::npos) << r.first_error;
  EXPECT_EQ(r.completion_tokens, 0);
  EXPECT_TRUE(to_json(r)["ttft_ms"]["p50"].is_null());
}

TEST(BenchServe, WrongKeyRefusedAndConnectionErrors) {
  {
    FakeServer fake;
    fake.api_key = "right";
    fake.start();
    BenchOptions o;
    o.port = fake.port;
    o.requests = 2;
    o.prompt_len = 4;
    o.max_tokens = 2;
    o.api_key = "wrong";
    const BenchReport r = run_bench(o);
    EXPECT_EQ(r.errors, 2);
    EXPECT_NE(r.first_error.find("HTTP 401: bad key"), std::string::npos) << r.first_error;
  }
  // A port nothing listens on: one the kernel hands out, bound without listen(), then closed.
  int port = 0;
  {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(fd, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len), 0);
    port = ntohs(a.sin_port);
    close(fd);
  }
  BenchOptions o;
  o.port = port;
  o.concurrency = 2;
  o.requests = 3;
  o.prompt_len = 4;
  o.max_tokens = 2;
  o.timeout_s = 5;
  const BenchReport r = run_bench(o);
  EXPECT_EQ(r.model, "default");
  EXPECT_EQ(r.errors, 3);
  EXPECT_NE(r.first_error.find("could not connect to http://127.0.0.1:" + std::to_string(port) + "/v1/completions"),
            std::string::npos)
      << r.first_error;
}

TEST(BenchServe, TimeoutCountsAsAnError) {
  FakeServer fake;
  fake.first_delay = 2500ms;
  fake.start();
  BenchOptions o;
  o.port = fake.port;
  o.requests = 1;
  o.prompt_len = 4;
  o.max_tokens = 2;
  o.timeout_s = 1;
  const auto t0 = std::chrono::steady_clock::now();
  const BenchReport r = run_bench(o);
  EXPECT_EQ(r.errors, 1);
  EXPECT_NE(r.first_error.find("timed out"), std::string::npos) << r.first_error;
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 2.4);
}

TEST(BenchServe, BadOptionsRefused) {
  BenchOptions o;
  o.requests = 0;
  test::expect_error([&] { run_bench(o); }, "--requests");
  o.requests = kMaxBenchRequests + 1;
  test::expect_error([&] { run_bench(o); }, "--requests");
  o.requests = 1;
  o.concurrency = kMaxBenchConcurrency + 1;
  test::expect_error([&] { run_bench(o); }, "--concurrency");
  o.concurrency = 1;
  o.prompt_len = 4;
  o.shared_prefix = 5;
  test::expect_error([&] { run_bench(o); }, "--shared-prefix");
}

TEST(BenchServe, CliJsonAgainstTheFake) {
  FakeServer fake;
  fake.first_delay = 20ms;
  fake.gap = 2ms;
  fake.fail_every = 5;
  fake.start();
  const auto r = test::run_cli("bench-serve http://127.0.0.1:" + std::to_string(fake.port) +
                               "/v1 --concurrency 2 --requests 5 --prompt-len 16 --max-tokens 4 --shared-prefix 4 "
                               "--seed 3 --timeout 30 --json");
  ASSERT_EQ(r.status, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["requests"], 5);
  EXPECT_EQ(j["errors"], 1);
  EXPECT_EQ(j["concurrency"], 2);
  EXPECT_EQ(j["prompt_len"], 16);
  EXPECT_EQ(j["max_tokens"], 4);
  EXPECT_EQ(j["completion_tokens"], 16);
  EXPECT_GE(j["ttft_ms"]["p50"].get<double>(), 20.0);
  EXPECT_NE(j["first_error"].get<std::string>().find("HTTP 500"), std::string::npos);
  // The table.
  const auto t = test::run_cli("bench-serve http://localhost:" + std::to_string(fake.port) +
                               " --concurrency 1 --requests 2 --prompt-len 4 --max-tokens 2");
  ASSERT_EQ(t.status, 0) << t.out;
  EXPECT_NE(t.out.find("| TTFT"), std::string::npos) << t.out;
  EXPECT_NE(t.out.find("generation"), std::string::npos) << t.out;
}

}  // namespace
}  // namespace lmpress::serve
