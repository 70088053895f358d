// `lmpress serve` started as a child process on 127.0.0.1 with a free port,
// for tests that talk to it over real HTTP; stopped (SIGTERM) by stop() or
// the destructor.
#pragma once
#include <string>
#include <vector>

namespace lmpress::test {

class ServeProcess {
 public:
  // Starts `lmpress serve <args> --host 127.0.0.1 --port 0` and waits (up to
  // `wait_s`) until /health answers. ok() is false, with log() saying why,
  // when it did not come up.
  explicit ServeProcess(const std::vector<std::string>& args, double wait_s = 120);
  ~ServeProcess();
  ServeProcess(const ServeProcess&) = delete;
  ServeProcess& operator=(const ServeProcess&) = delete;

  bool ok() const { return port_ > 0; }
  int port() const { return port_; }
  // SIGTERM, then the exit status (128 + signal when killed; -1 after
  // `wait_s` without exiting, and then it is killed).
  int stop(double wait_s = 30);
  std::string log() const;  // its stderr and stdout so far

 private:
  int pid_ = -1, port_ = -1;
  std::string dir_, log_path_;
};

}  // namespace lmpress::test
