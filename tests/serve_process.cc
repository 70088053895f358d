#include "serve_process.h"

#include <fcntl.h>
#include <httplib.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include "test_util.h"

namespace lmpress::test {

ServeProcess::ServeProcess(const std::vector<std::string>& args, double wait_s) {
  dir_ = temp_dir();
  log_path_ = dir_ + "/serve.log";
  std::vector<std::string> words = cli_command();
  words.push_back("serve");
  words.insert(words.end(), args.begin(), args.end());
  for (const char* w : {"--host", "127.0.0.1", "--port", "0"}) words.push_back(w);
  std::vector<char*> argv;
  for (auto& w : words) argv.push_back(w.data());
  argv.push_back(nullptr);
  pid_ = fork();
  if (pid_ == 0) {
    const int fd = open(log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) _exit(127);
    dup2(fd, 1);
    dup2(fd, 2);
    execvp(argv[0], argv.data());
    _exit(127);
  }
  if (pid_ < 0) return;
  // The server prints "... on http://127.0.0.1:PORT (...": wait for it, then for /health.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(wait_s);
  const std::regex addr(R"(on http://127\.0\.0\.1:(\d+) )");
  int port = -1;
  while (std::chrono::steady_clock::now() < deadline) {
    int st = 0;
    if (waitpid(pid_, &st, WNOHANG) == pid_) {
      pid_ = -1;
      return;
    }
    std::smatch mt;
    const std::string text = log();
    if (port < 0 && std::regex_search(text, mt, addr)) port = std::stoi(mt[1]);
    if (port > 0) {
      httplib::Client c("127.0.0.1", port);
      auto r = c.Get("/health");
      if (r && r->status == 200) {
        port_ = port;
        return;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

ServeProcess::~ServeProcess() { stop(10); }

int ServeProcess::stop(double wait_s) {
  if (pid_ <= 0) return -1;
  kill(pid_, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(wait_s);
  int st = 0;
  for (;;) {
    if (waitpid(pid_, &st, WNOHANG) == pid_) break;
    if (std::chrono::steady_clock::now() > deadline) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &st, 0);
      pid_ = -1;
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  pid_ = -1;
  port_ = -1;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

std::string ServeProcess::log() const {
  std::ifstream in(log_path_);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace lmpress::test
