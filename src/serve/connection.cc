#include "serve/connection.h"

#include <cerrno>
#include <cstdlib>

#if defined(__linux__)
#include <dirent.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#endif

namespace lmpress::serve {

#if defined(__linux__)
namespace {

int port_of(const sockaddr_storage& a) {
  if (a.ss_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in&>(a).sin_port);
  if (a.ss_family == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6&>(a).sin6_port);
  return -1;
}

bool matches(int fd, const std::string& remote_addr, int remote_port, int local_port) {
  sockaddr_storage peer{}, self{};
  socklen_t peer_len = sizeof peer, self_len = sizeof self;
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &peer_len) != 0) return false;
  if (port_of(peer) != remote_port) return false;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&self), &self_len) != 0 || port_of(self) != local_port) return false;
  char host[NI_MAXHOST];
  if (getnameinfo(reinterpret_cast<sockaddr*>(&peer), peer_len, host, sizeof host, nullptr, 0, NI_NUMERICHOST) != 0)
    return false;
  return remote_addr == host;
}

}  // namespace

int connection_socket(const std::string& remote_addr, int remote_port, int local_port) {
  if (remote_port <= 0 || local_port <= 0) return -1;
  DIR* dir = opendir("/proc/self/fd");
  if (!dir) return -1;
  int found = -1;
  while (dirent* e = readdir(dir)) {
    char* end = nullptr;
    const long fd = std::strtol(e->d_name, &end, 10);
    if (end == e->d_name || *end != '\0' || fd == dirfd(dir)) continue;
    if (matches(int(fd), remote_addr, remote_port, local_port)) {
      found = int(fd);
      break;
    }
  }
  closedir(dir);
  return found;
}

bool peer_closed(int fd) {
  // POLLRDHUP: the peer shut its side, even with a pipelined request still unread before the end.
  pollfd p{fd, POLLIN | POLLRDHUP, 0};
  int n;
  do n = poll(&p, 1, 0);
  while (n < 0 && errno == EINTR);
  return n > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) != 0;
}

#else

int connection_socket(const std::string&, int, int) { return -1; }
bool peer_closed(int) { return false; }

#endif

}  // namespace lmpress::serve
