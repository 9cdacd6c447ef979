// Helpers for the tests that poke actors over real sockets: a free tcp port, a send and a
// bounded receive that fail the test instead of hanging it, and the report socket a client needs.
#pragma once

#include <doctest/doctest.h>

#include <chrono>
#include <optional>
#include <string>
#include <zmq.hpp>

#include "src/wire/pipe.hpp"
#include "src/wire/protocol.hpp"
#include "src/wire/stats.hpp"
#include "run_binary.hpp"  // free_port

namespace zyolo_test {

// A raw DEALER with `routing_id`, connected to `endpoint`, that closes at once.
inline zmq::socket_t dealer(zmq::context_t& ctx, const std::string& routing_id,
                            const std::string& endpoint) {
  zmq::socket_t s(ctx, zmq::socket_type::dealer);
  s.set(zmq::sockopt::linger, 0);
  s.set(zmq::sockopt::routing_id, routing_id);
  s.connect(endpoint);
  return s;
}

inline void send(zmq::socket_t& s, zyolo::Frames f) { REQUIRE(zyolo::send_frames(s, f)); }

// The next message on `s` within `timeout` (a bound for a broken peer, never a pacing sleep).
inline std::optional<zyolo::Frames> recv(zmq::socket_t& s,
                                         std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  zmq::pollitem_t item{s.handle(), 0, ZMQ_POLLIN, 0};
  zmq::poll(&item, 1, timeout);
  if (!(item.revents & ZMQ_POLLIN)) return std::nullopt;
  return zyolo::recv_frames(s);
}

// The report socket of a test that starts clients itself (what the supervisor binds): a PULL
// bound to `endpoint`, with no high-water mark, like the supervisor's.
inline zmq::socket_t report_socket(zmq::context_t& ctx, const std::string& endpoint) {
  zmq::socket_t s(ctx, zmq::socket_type::pull);
  s.set(zmq::sockopt::linger, 0);
  s.set(zmq::sockopt::rcvhwm, 0);
  s.bind(endpoint);
  return s;
}

}  // namespace zyolo_test
