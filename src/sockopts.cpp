// Data-plane socket options: see sockopts.hpp.
#include "sockopts.hpp"

namespace zyolo {

void apply_socket_options(zmq::socket_t& socket, const Config& config) {
  const auto& s = config.sockets;
  socket.set(zmq::sockopt::linger, s.linger_ms);
  socket.set(zmq::sockopt::sndhwm, s.sndhwm);
  socket.set(zmq::sockopt::rcvhwm, s.rcvhwm);
  socket.set(zmq::sockopt::reconnect_ivl, s.reconnect_ivl_ms);
  socket.set(zmq::sockopt::reconnect_ivl_max, s.reconnect_ivl_max_ms);
  socket.set(zmq::sockopt::heartbeat_ivl, s.heartbeat_ivl_ms);
  socket.set(zmq::sockopt::heartbeat_timeout, s.heartbeat_timeout_ms);
  socket.set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(config.broker.max_message_bytes));
}

}  // namespace zyolo
