// Data-plane socket options: see sockopts.hpp.
#include "src/wire/sockopts.hpp"

namespace zyolo {

void apply_socket_options(zmq::socket_ref socket, const Config& config, Side side) {
  const auto& s = config.sockets;
  socket.set(zmq::sockopt::linger, s.linger_ms);
  socket.set(zmq::sockopt::sndhwm, s.sndhwm);
  socket.set(zmq::sockopt::rcvhwm, s.rcvhwm);
  socket.set(zmq::sockopt::reconnect_ivl, s.reconnect_ivl_ms);
  socket.set(zmq::sockopt::reconnect_ivl_max, s.reconnect_ivl_max_ms);
  socket.set(zmq::sockopt::heartbeat_ivl, s.heartbeat_ivl_ms);
  socket.set(zmq::sockopt::heartbeat_timeout, s.heartbeat_timeout_ms);
  socket.set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(config.broker.max_message_bytes));
  const auto& curve = config.curve;
  if (!curve.enabled()) return;
  socket.set(zmq::sockopt::curve_secretkey, curve.secret_key);
  if (side == Side::Binds) {
    socket.set(zmq::sockopt::curve_server, true);
    socket.set(zmq::sockopt::zap_domain, kZapDomain);
  } else {
    socket.set(zmq::sockopt::curve_publickey, curve.public_key);
    socket.set(zmq::sockopt::curve_serverkey, curve.server_public_key);
  }
}

void reconnect_inproc(zmq::socket_ref socket, const std::string& endpoint) {
  if (!endpoint.starts_with("inproc://")) return;
  try {
    socket.disconnect(endpoint);
  } catch (const zmq::error_t&) {  // the old connection is gone already
  }
  socket.connect(endpoint);
}

}  // namespace zyolo
