// lmpress bench-serve http://127.0.0.1:8080 --concurrency 4 --requests 32 --prompt-len 128 --max-tokens 32:
// a bounded load of streaming completions against an OpenAI-compatible server
// on this machine (llama-server, lmpress serve); TTFT, inter-token latency,
// request latency and throughput. The work is in serve/bench_client.
#include <cmath>

#include "commands.h"
#include "core/error.h"
#include "core/progress.h"
#include "serve/bench_client.h"

namespace lmpress::cli {

namespace {

std::string ms(double v) { return std::isfinite(v) ? fmt::format("{:.1f}", v) : "-"; }

}  // namespace

void add_bench_serve(CLI::App& app) {
  struct Opts {
    std::string url;
    serve::BenchOptions b;
    bool json = false;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand(
      "bench-serve", "Load-test an OpenAI-compatible server on this machine: TTFT, inter-token latency, throughput");
  cmd->add_option("url", o->url, "Server URL on the loopback interface: http://127.0.0.1:PORT, http://localhost:PORT "
                                 "or http://[::1]:PORT")
      ->required();
  cmd->add_option("--concurrency", o->b.concurrency, "Requests in flight at most (client threads)")
      ->required()
      ->check(CLI::Range(1, serve::kMaxBenchConcurrency));
  cmd->add_option("--requests", o->b.requests, "Requests in all")
      ->required()
      ->check(CLI::Range(int64_t(1), serve::kMaxBenchRequests));
  cmd->add_option("--prompt-len", o->b.prompt_len, "Prompt length in token ids (random ids in [100, 1000))")
      ->required()
      ->check(CLI::Range(int64_t(1), int64_t(1) << 20));
  cmd->add_option("--max-tokens", o->b.max_tokens, "Tokens generated per request (ignore_eos is set)")
      ->required()
      ->check(CLI::Range(int64_t(1), int64_t(1) << 20));
  cmd->add_option("--shared-prefix", o->b.shared_prefix,
                  "The first K prompt ids are the same in every request (prefix caching), at most --prompt-len")
      ->capture_default_str()
      ->check(CLI::Range(int64_t(0), int64_t(1) << 20));
  cmd->add_option("--seed", o->b.seed, "Seed of the prompts' ids")->capture_default_str();
  cmd->add_option("--timeout", o->b.timeout_s, "Seconds a request may take before it counts as an error")
      ->capture_default_str()
      ->check(CLI::Range(0.001, 86400.0));
  cmd->add_option("--model", o->b.model, "Model name sent (default: the first id of GET /v1/models, else \"default\")");
  cmd->add_option("--api-key", o->b.api_key, "Sent as \"Authorization: Bearer KEY\"");
  cmd->add_flag("--json", o->json, "Print one JSON object instead of the table");
  on_run(cmd, [o] {
    const auto url = serve::parse_loopback_url(o->url);
    if (o->b.shared_prefix > o->b.prompt_len)
      fail("--shared-prefix {} is longer than --prompt-len {}", o->b.shared_prefix, o->b.prompt_len);
    serve::BenchOptions b = o->b;
    b.host = url.host;
    b.port = url.port;
    Progress progress("bench-serve requests", uint64_t(b.requests));
    b.on_request_done = [&progress](int64_t done) { progress.update(uint64_t(done)); };
    const serve::BenchReport r = serve::run_bench(b);
    progress.finish();
    if (o->json) {
      fmt::print("{}\n", json_text(serve::to_json(r)));
    } else {
      fmt::print("{}: model {}, {} requests ({} failed), concurrency {}, prompt {} tokens, max {} tokens, {:.2f} s\n",
                 o->url, r.model, r.requests, r.errors, r.concurrency, r.prompt_len, r.max_tokens, r.duration_s);
      fmt::print("| {:<14} | {:>10} | {:>10} | {:>10} | {:>10} |\n", "ms", "p50", "p95", "p99", "mean");
      fmt::print("| {:-<14} | {:->10} | {:->10} | {:->10} | {:->10} |\n", "", "", "", "", "");
      const auto row = [](const char* name, const serve::Summary& s, bool with_mean) {
        fmt::print("| {:<14} | {:>10} | {:>10} | {:>10} | {:>10} |\n", name, ms(s.p50), ms(s.p95), ms(s.p99),
                   with_mean ? ms(s.mean) : "-");
      };
      row("TTFT", r.ttft_ms, true);
      row("inter-token", r.itl_ms, true);
      row("request", r.latency_ms, false);
      fmt::print("throughput: prompt {:.1f} tokens/s, generation {:.1f} tokens/s ({} and {} tokens of the requests "
                 "that succeeded)\n",
                 r.prompt_tokens_per_s, r.gen_tokens_per_s, r.prompt_tokens, r.completion_tokens);
      if (!r.first_error.empty()) fmt::print("first error: {}\n", r.first_error);
    }
    if (r.errors == r.requests) fail("bench-serve: every request failed; the first: {}", r.first_error);
  });
}

}  // namespace lmpress::cli
