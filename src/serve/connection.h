// The socket of an HTTP request, for handlers that must notice a client that
// left while they compute. cpp-httplib (0.11) hands a handler the request but
// not its socket, and a non-streaming answer is written only after the
// handler returns; the connection is found again by its addresses.
#pragma once
#include <string>

namespace lmpress::serve {

// The descriptor of this process's connected TCP socket whose peer is
// (remote_addr, remote_port) and whose own port is local_port; -1 when there
// is none (or off Linux). The addresses are compared as getnameinfo's
// numeric form, which is what httplib puts in Request::remote_addr.
int connection_socket(const std::string& remote_addr, int remote_port, int local_port);

// True when the peer of a connected socket has closed, shut its sending side
// or reset it, whether or not data it sent earlier is still unread. Does not
// block or consume anything.
bool peer_closed(int fd);

}  // namespace lmpress::serve
