// lmpress serve MODEL: the OpenAI-compatible HTTP server.
#include <csignal>
#include <pthread.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <thread>

#include "commands.h"
#include "core/cpu_isa.h"
#include "core/error.h"
#include "kernels/matmul.h"
#include "model/repack.h"
#include "runtime/chat_template.h"
#include "serve/server.h"

namespace lmpress::cli {

void add_serve(CLI::App& app) {
  struct Opts {
    std::vector<std::string> lora;
    std::string model, tokenizer, tmpl, alias;
    CacheOptions kv;
    serve::EngineOptions engine;
    serve::ServerOptions server;
    SpecOptions spec;
    int threads = 0;
    double shutdown_seconds = 10;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("serve", "Serve a model over an OpenAI-compatible HTTP API");
  add_path_option(cmd, "model", o->model, "Model", PathRole::Model)->required();
  cmd->add_option("--host", o->server.host, "Address to listen on (default: loopback only)")->capture_default_str();
  cmd->add_option("--port", o->server.port, "Port (0: a free one, printed)")->capture_default_str()->check(CLI::Range(0, 65535));
  cmd->add_option("--parallel", o->engine.max_running, "Sequences computed together")
      ->capture_default_str()->check(CLI::Range(1, 1024));
  cmd->add_option("-c,--ctx-size", o->engine.ctx_size, "Context of one request (0: the model's, at most 4096)")
      ->capture_default_str()->check(CLI::Range(0, 1 << 20));
  cmd->add_option("--kv-blocks", o->engine.kv_blocks,
                  "Blocks of 16 positions (KIVI: whole groups) in the KV pool (0: enough for --parallel requests of "
                  "--ctx-size)")
      ->capture_default_str()->check(CLI::Range(0, 1 << 24));
  cmd->add_option_function<double>(
         "--kv-memory", [o](double mib) { o->engine.kv_memory = mib * (1 << 20); },
         "MiB for the KV cache instead of --kv-blocks: as many blocks as fit besides --parallel sequences' KIVI "
         "f16 rows")
      ->check(CLI::Range(0.001, 1.0e7));
  cmd->add_option("-b,--batch-size", o->engine.batch_tokens, "Tokens per forward pass (prompt chunks and decoding)")
      ->capture_default_str()->check(CLI::Range(1, 8192));
  cmd->add_option("--max-queue", o->engine.max_waiting, "Requests that may wait; more are answered 503")
      ->capture_default_str()->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--api-key", o->server.api_key, "Require Authorization: Bearer KEY (all routes but /health)");
  add_chat_template_option(cmd, "--chat-template", o->tmpl);
  cmd->add_option("--alias", o->alias, "Model name in the API (default: the model's file or folder name)");
  cmd->add_option("--http-threads", o->server.http_threads,
                  "Connections served at once (0: --parallel + --max-queue + 8, so that a full queue answers 503 "
                  "and /health answers while requests stream)")
      ->capture_default_str()->check(CLI::Range(0, 4096));
  cmd->add_option("--shutdown-timeout", o->shutdown_seconds,
                  "Seconds SIGINT/SIGTERM waits for requests in flight before aborting them")
      ->capture_default_str()->check(CLI::Range(0.0, 3600.0));
  add_lora_option(cmd, o->lora);
  add_path_option(cmd, "--tokenizer", o->tokenizer, "Tokenizer file for llama2.c checkpoints", PathRole::Input);
  add_cache_options(cmd, o->kv);
  add_kv_policy_option(cmd, o->kv);
  add_spec_options(cmd, o->spec);
  add_threads_option(cmd, o->threads);
  on_run(cmd, [o] {
    // Signals go to one thread that waits for them: every thread started
    // from here on (engine, HTTP pool, OpenMP) inherits the blocked mask.
    // It starts before the model loads, so that a signal during a long load
    // ends the program at once (nothing is in flight yet).
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
    struct Shutdown {
      std::mutex mu;
      serve::Engine* engine = nullptr;  // set once serving starts
      serve::Server* server = nullptr;
      std::atomic<bool> http_done{false};
      bool quit = false;  // the command ends on its own: the waiter just returns
    };
    auto sd = std::make_shared<Shutdown>();
    std::thread waiter([sd, stop_signals, seconds = o->shutdown_seconds] {
      int sig = 0;
      sigwait(&stop_signals, &sig);
      std::lock_guard lk(sd->mu);
      if (sd->quit) return;
      const char* name = sig == SIGINT ? "SIGINT" : "SIGTERM";
      if (!sd->engine) {
        fmt::print(stderr, "lmpress serve: {} while loading; exiting\n", name);
        std::fflush(stderr);
        std::_Exit(0);
      }
      fmt::print(stderr, "lmpress serve: {}, finishing requests in flight (at most {} s)\n", name, seconds);
      sd->engine->drain(seconds);
      // stop() before the listener has started is a no-op in httplib: repeat it until run() returns.
      while (!sd->http_done) {
        sd->server->stop();
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    });
    // Ends the waiter however the command ends (a load error throws).
    struct EndWaiter {
      std::thread& t;
      std::shared_ptr<Shutdown> sd;
      ~EndWaiter() {
        {
          std::lock_guard lk(sd->mu);
          sd->quit = true;
        }
        pthread_kill(t.native_handle(), SIGTERM);
        t.join();
      }
    } end_waiter{waiter, sd};

    set_num_threads(o->threads);
    auto m = load_for_inference(o->model, o->tokenizer, o->lora);
    if (!m->tokenizer) fail("{}: the model has no tokenizer", m->path);
    o->engine.kv = o->kv.spec();
    o->engine.policy = o->kv.eviction();
    std::string tmpl_origin = "none";
    if (!o->tmpl.empty() || model_chat_template(o->model)) {
      const ModelChatTemplate t = select_chat_template(o->model, o->tmpl);
      o->server.chat_template = t.source;
      tmpl_origin = t.origin;
    }
    o->server.model_id = !o->alias.empty() ? o->alias
                                            : std::filesystem::path(o->model).lexically_normal().filename().string();
    if (o->server.model_id.empty()) o->server.model_id = std::filesystem::path(o->model).parent_path().filename().string();
    if (o->server.http_threads == 0)
      o->server.http_threads = int(std::min<int64_t>(4096, o->engine.max_running + o->engine.max_waiting + 8));
    std::unique_ptr<DraftSource> spec;
    if (!o->spec.type.empty()) {
      const int64_t n_ctx = serve::context_of(*m, o->engine);
      if (const std::string chose = resolve_spec(o->spec, *m, n_ctx); !chose.empty())
        fmt::print(stderr, "lmpress serve: {}\n", chose);
      spec = std::make_unique<DraftSource>(o->spec, *m, n_ctx);
      o->engine.spec = spec.get();
    }
    serve::Engine engine(*m, o->engine);
    serve::Server server(engine, o->server);
    const int port = server.bind();
    const serve::EngineMetrics mt = engine.metrics();
    fmt::print(stderr,
               "lmpress serve: {} on http://{}:{} (context {}, {} KV blocks of {} ({} cache, {:.1f} MiB, {} "
               "full-context requests{}), {} in parallel, chat template: {}, kernels: {})\n",
               o->server.model_id, o->server.host, port, engine.ctx_size(), mt.kv_blocks, mt.block_size,
               kv_spec_name(o->engine.kv), double(mt.kv_pool_bytes) / (1 << 20),
               mt.kv_blocks / blocks_for(o->engine.policy, mt.block_size, engine.ctx_size()),
               o->engine.policy.active() ? ", evicting " + kv_policy_name(o->engine.policy) : std::string(),
               o->engine.max_running,
               tmpl_origin, cpu_isa_name());
    {
      std::lock_guard lk(sd->mu);
      sd->engine = &engine;
      sd->server = &server;
    }
    // Before engine and server go, however this scope ends: waits for a waiter
    // still in its stop loop, and leaves it nothing to reach.
    struct Detach {
      Shutdown& sd;
      ~Detach() {
        std::lock_guard lk(sd.mu);
        sd.engine = nullptr;
        sd.server = nullptr;
        sd.quit = true;
      }
    } detach{*sd};
    bool served = true;
    std::thread http([&] {
      served = server.run();
      sd->http_done = true;
      engine.stop();
    });
    engine.run();  // on this thread, which loaded the model (see serve/engine.h)
    http.join();
    if (!served) fail("serving on {}:{} failed", o->server.host, port);
  });
}

}  // namespace lmpress::cli
