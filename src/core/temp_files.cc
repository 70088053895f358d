#include "core/temp_files.h"

#include <fcntl.h>
#include <limits.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstring>

namespace lmpress {

namespace {

// Fixed slots so that the handler touches no heap and takes no lock.
struct Slot {
  std::atomic<int> state{0};  // 0 free, 1 being written, 2 live
  bool is_dir = false;
  char path[PATH_MAX];
};
Slot g_slots[64];

struct Dirent64 {
  uint64_t ino;
  int64_t off;
  unsigned short reclen;
  unsigned char type;
  char name[1];
};

// Async-signal-safe: raw syscalls only.
void remove_flat_dir(const char* dir) {
  const int fd = ::open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    alignas(8) char buf[4096];
    for (int pass = 0; pass < 64; pass++) {
      bool removed = false;
      ::lseek(fd, 0, SEEK_SET);
      for (;;) {
        const long n = ::syscall(SYS_getdents64, fd, buf, sizeof buf);
        if (n <= 0) break;
        for (long off = 0; off < n;) {
          const auto* d = reinterpret_cast<const Dirent64*>(buf + off);
          const char* name = d->name;
          if (std::strcmp(name, ".") != 0 && std::strcmp(name, "..") != 0 && ::unlinkat(fd, name, 0) == 0)
            removed = true;
          off += d->reclen;
        }
      }
      if (!removed) break;
    }
    ::close(fd);
  }
  ::rmdir(dir);
}

void on_signal(int sig) {
  for (Slot& s : g_slots) {
    if (s.state.load() != 2) continue;
    if (s.is_dir)
      remove_flat_dir(s.path);
    else
      ::unlink(s.path);
  }
  std::signal(sig, SIG_DFL);
  ::raise(sig);
}

}  // namespace

void install_temp_cleanup() {
  static std::atomic<bool> done{false};
  if (done.exchange(true)) return;
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) {
    struct sigaction old {};
    // A signal the caller ignores (nohup, background jobs) stays ignored.
    if (::sigaction(sig, nullptr, &old) == 0 && old.sa_handler == SIG_IGN) continue;
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    ::sigaction(sig, &sa, nullptr);
  }
}

TempPath::TempPath(const std::string& path, bool is_dir) {
  if (path.size() >= PATH_MAX) return;
  for (int i = 0; i < int(std::size(g_slots)); i++) {
    int expected = 0;
    if (!g_slots[i].state.compare_exchange_strong(expected, 1)) continue;
    std::memcpy(g_slots[i].path, path.c_str(), path.size() + 1);
    g_slots[i].is_dir = is_dir;
    g_slots[i].state.store(2);
    slot_ = i;
    return;
  }
}

TempPath::~TempPath() {
  if (slot_ >= 0) g_slots[slot_].state.store(0);
}

}  // namespace lmpress
