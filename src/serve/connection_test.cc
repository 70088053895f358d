#include "serve/connection.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <thread>

namespace lmpress::serve {
namespace {

int port_of(int fd) {
  sockaddr_in a{};
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  return ntohs(a.sin_port);
}

// Waits a little for the kernel to deliver what the peer did.
bool closed_soon(int fd) {
  for (int i = 0; i < 100; i++) {
    if (peer_closed(fd)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

TEST(Connection, FindsTheAcceptedSocketAndSeesItsPeerLeave) {
  const int listener = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(listener, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(listen(listener, 4), 0);
  addr.sin_port = htons(uint16_t(port_of(listener)));

  // Two clients, so that the search has to tell connections apart by port.
  int clients[2], accepted[2];
  for (int i = 0; i < 2; i++) {
    clients[i] = socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_EQ(connect(clients[i], reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    accepted[i] = accept(listener, nullptr, nullptr);
    ASSERT_GE(accepted[i], 0);
  }
  const int server_port = port_of(listener);
  for (int i = 0; i < 2; i++)
    EXPECT_EQ(connection_socket("127.0.0.1", port_of(clients[i]), server_port), accepted[i]);
  EXPECT_EQ(connection_socket("127.0.0.2", port_of(clients[0]), server_port), -1);
  EXPECT_EQ(connection_socket("127.0.0.1", port_of(clients[0]), server_port + 1), -1);
  EXPECT_EQ(connection_socket("127.0.0.1", -1, server_port), -1);

  // A peer that sent more (a pipelined request) is still there; one that closed is not, even with
  // its bytes unread.
  EXPECT_FALSE(peer_closed(accepted[0]));
  ASSERT_EQ(write(clients[0], "GET", 3), 3);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_FALSE(peer_closed(accepted[0]));
  char buf[3];
  EXPECT_EQ(recv(accepted[0], buf, 3, MSG_PEEK), 3);  // peer_closed consumed nothing
  close(clients[0]);
  EXPECT_TRUE(closed_soon(accepted[0]));
  EXPECT_FALSE(peer_closed(accepted[1]));
  // A reset (SO_LINGER 0) is a close too.
  linger lg{1, 0};
  setsockopt(clients[1], SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  close(clients[1]);
  EXPECT_TRUE(closed_soon(accepted[1]));
  for (int fd : accepted) close(fd);
  close(listener);
}

}  // namespace
}  // namespace lmpress::serve
