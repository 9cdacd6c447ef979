#include "src/wire/monitor.hpp"

#include <cstring>

namespace zyolo {

Decoded<SocketEvent> decode_socket_event(const Frames& frames) {
  if (frames.size() != 2 || frames[0].size() != 6) return Fault::BadArguments;
  SocketEvent e;
  std::memcpy(&e.event, frames[0].data(), sizeof e.event);
  std::memcpy(&e.value, static_cast<const char*>(frames[0].data()) + sizeof e.event, sizeof e.value);
  return e;
}

ConnectionWatch::ConnectionWatch(zmq::context_t& ctx, zmq::socket_ref watched,
                                 const std::string& name)
    : watched_(watched), events_(ctx, zmq::socket_type::pair) {
  const std::string endpoint = "inproc://zyolo-monitor-" + name;
  if (zmq_socket_monitor(watched.handle(), endpoint.c_str(),
                         ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_HANDSHAKE_SUCCEEDED) != 0)
    throw zmq::error_t();
  events_.set(zmq::sockopt::linger, 0);
  events_.connect(endpoint);
}

ConnectionWatch::~ConnectionWatch() {
  zmq_socket_monitor(watched_.handle(), nullptr, 0);  // stops the monitor; its end closes
}

void watch_connection(std::optional<ConnectionWatch>& watch, zmq::context_t& ctx,
                      zmq::socket_ref watched, const std::string& endpoint, const std::string& name) {
  if (!endpoint.starts_with("inproc://")) watch.emplace(ctx, watched, name);
}

bool ConnectionWatch::reconnected() {
  bool back = false;
  while (auto frames = recv_frames(events_, zmq::recv_flags::dontwait)) {
    auto e = decode_socket_event(*frames);
    if (!e) continue;
    if (e->event == ZMQ_EVENT_DISCONNECTED) {
      lost_ = true;
    } else if (e->event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED && lost_) {
      lost_ = false;
      back = true;
    }
  }
  return back;
}

}  // namespace zyolo
