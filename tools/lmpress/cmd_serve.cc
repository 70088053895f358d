// lmpress serve MODEL: the OpenAI-compatible HTTP server.
#include <csignal>
#include <pthread.h>

#include <filesystem>
#include <thread>

#include "commands.h"
#include "core/error.h"
#include "kernels/matmul.h"
#include "model/repack.h"
#include "runtime/chat_template.h"
#include "serve/server.h"

namespace lmpress::cli {

void add_serve(CLI::App& app) {
  struct Opts {
    std::string model, tokenizer, tmpl, kv = "f16", alias;
    serve::EngineOptions engine;
    serve::ServerOptions server;
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
                  "Blocks of 16 positions in the KV pool (0: enough for --parallel requests of --ctx-size)")
      ->capture_default_str()->check(CLI::Range(0, 1 << 24));
  cmd->add_option("-b,--batch-size", o->engine.batch_tokens, "Tokens per forward pass (prompt chunks and decoding)")
      ->capture_default_str()->check(CLI::Range(1, 8192));
  cmd->add_option("--max-queue", o->engine.max_waiting, "Requests that may wait; more are answered 503")
      ->capture_default_str()->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--api-key", o->server.api_key, "Require Authorization: Bearer KEY (all routes but /health)");
  add_chat_template_option(cmd, "--chat-template", o->tmpl);
  cmd->add_option("--alias", o->alias, "Model name in the API (default: the model's file or folder name)");
  cmd->add_option("--http-threads", o->server.http_threads, "Connections served at once")
      ->capture_default_str()->check(CLI::Range(1, 4096));
  cmd->add_option("--shutdown-timeout", o->shutdown_seconds,
                  "Seconds SIGINT/SIGTERM waits for requests in flight before aborting them")
      ->capture_default_str()->check(CLI::Range(0.0, 3600.0));
  add_path_option(cmd, "--tokenizer", o->tokenizer, "Tokenizer file for llama2.c checkpoints", PathRole::Input);
  add_cache_type_option(cmd, o->kv);
  add_threads_option(cmd, o->threads);
  on_run(cmd, [o] {
    // Signals go to one thread that waits for them: every thread started
    // from here on (engine, HTTP pool, OpenMP) inherits the blocked mask.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

    set_num_threads(o->threads);
    auto m = load_for_inference(o->model, o->tokenizer);
    if (!m->tokenizer) fail("{}: the model has no tokenizer", m->path);
    o->engine.kv = parse_kv_type(o->kv);
    std::string tmpl_origin = "none";
    if (!o->tmpl.empty() || model_chat_template(o->model)) {
      const ModelChatTemplate t = select_chat_template(o->model, o->tmpl);
      o->server.chat_template = t.source;
      tmpl_origin = t.origin;
    }
    o->server.model_id = !o->alias.empty() ? o->alias
                                            : std::filesystem::path(o->model).lexically_normal().filename().string();
    if (o->server.model_id.empty()) o->server.model_id = std::filesystem::path(o->model).parent_path().filename().string();
    serve::Engine engine(*m, o->engine);
    serve::Server server(engine, o->server);
    const int port = server.bind();
    const serve::EngineMetrics mt = engine.metrics();
    fmt::print(stderr, "lmpress serve: {} on http://{}:{} (context {}, {} KV blocks of {}, {} in parallel, chat template: {})\n",
               o->server.model_id, o->server.host, port, engine.ctx_size(), mt.kv_blocks, mt.block_size,
               o->engine.max_running, tmpl_origin);
    std::thread waiter([&] {
      int sig = 0;
      sigwait(&stop_signals, &sig);
      fmt::print(stderr, "lmpress serve: {}, finishing requests in flight (at most {} s)\n",
                 sig == SIGINT ? "SIGINT" : "SIGTERM", o->shutdown_seconds);
      engine.drain(o->shutdown_seconds);
      server.stop();
    });
    bool served = true;
    std::thread http([&] {
      served = server.run();
      engine.stop();
    });
    engine.run();  // on this thread, which loaded the model (see serve/engine.h)
    http.join();
    if (!served) pthread_kill(waiter.native_handle(), SIGTERM);  // the listener failed: end the waiter
    waiter.join();
    if (!served) fail("serving on {}:{} failed", o->server.host, port);
  });
}

}  // namespace lmpress::cli
