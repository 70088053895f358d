// `lmpress serve`: an OpenAI-compatible HTTP server (cpp-httplib) over the
// serving Engine. Routes: POST /v1/completions, POST /v1/chat/completions
// (both with `stream` as server-sent events), GET /v1/models, GET /health,
// POST /tokenize, POST /detokenize, GET /metrics (Prometheus text).
#pragma once
#include <memory>
#include <string>

#include "serve/engine.h"

namespace httplib {
class Server;
}

namespace lmpress::serve {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;
  std::string api_key;        // non-empty: every route but /health needs "Authorization: Bearer KEY"
  std::string model_id;       // the name /v1/models lists and requests may give
  std::string chat_template;  // Jinja source; empty: chat completions are refused
  int http_threads = 64;      // connections served at once (each streaming request holds one)
  size_t max_body_bytes = size_t(16) << 20;
};

class Server {
 public:
  Server(Engine& engine, ServerOptions opt);
  ~Server();
  // Binds host:port (port 0: a free one); throws lmpress::Error naming them.
  int bind();
  // Serves until stop(); call after bind(). False when listening failed.
  bool run();
  // Stops accepting and returns run() once the handlers in flight end.
  void stop();

 private:
  void routes();
  Engine& engine_;
  ServerOptions opt_;
  std::unique_ptr<httplib::Server> http_;
  int listen_fd_ = -1;
};

}  // namespace lmpress::serve
