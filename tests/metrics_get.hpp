// GET /metrics over a plain socket, for the tests that read a zyolo process's metrics endpoint
// (--metrics) while they fault it: a scrape of a process that is gone or cut off gives "".
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <string>

namespace zyolo_test {

// Connects `fd` (a fresh AF_INET stream socket, made wherever the caller needs it: in a network
// namespace, say) to `host`:`port`, sends GET /metrics and returns the whole answer, head and
// body, or "" when nobody answers; waits at most 2 s for each read. Closes `fd`.
inline std::string get_metrics(int fd, const std::string& host, int port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  ::inet_pton(AF_INET, host.c_str(), &addr.sin_addr);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  std::string out;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    const std::string get = "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    if (::send(fd, get.data(), get.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(get.size())) {
      for (;;) {
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, 2000) <= 0) break;
        char buffer[65536];
        const auto n = ::recv(fd, buffer, sizeof buffer, 0);
        if (n <= 0) break;
        out.append(buffer, static_cast<std::size_t>(n));
      }
    }
  }
  ::close(fd);
  return out;
}

}  // namespace zyolo_test
