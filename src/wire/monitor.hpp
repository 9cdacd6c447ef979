// Watching a connection come back: libzmq's socket monitor (zmq_socket_monitor) for the events
// that tell a connecting tcp or ipc socket its peer went away and a peer is there again. A worker
// uses it to learn at once that a broker restarted (see threads/worker.cpp); inproc has no such
// events (a restarted inproc broker is found by a failed send instead).
//
// The monitor's PAIR socket is made and read by the thread that owns the watched socket, as every
// socket is (libzmq itself writes the events from its I/O thread into its own end, behind a lock).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <zmq.hpp>

#include "src/wire/frames.hpp"

namespace zyolo {

// One monitor event: [6 bytes: event (uint16), value (uint32), native byte order][endpoint].
struct SocketEvent {
  uint16_t event = 0;  // ZMQ_EVENT_*
  uint32_t value = 0;
};
// Refuses anything but two frames whose first is exactly 6 bytes (Fault::BadArguments).
Decoded<SocketEvent> decode_socket_event(const Frames& frames);

// Watches `watched` (connected over tcp or ipc) for DISCONNECTED and HANDSHAKE_SUCCEEDED. Lives
// and dies with the watched socket, in its thread; `name` makes the monitor endpoint unique.
class ConnectionWatch {
 public:
  ConnectionWatch(zmq::context_t& ctx, zmq::socket_ref watched, const std::string& name);
  ~ConnectionWatch();
  ConnectionWatch(const ConnectionWatch&) = delete;
  ConnectionWatch& operator=(const ConnectionWatch&) = delete;

  // What to poll: readable when events wait.
  zmq::socket_ref socket() { return events_; }
  // Reads every event waiting; true when a handshake succeeded after a disconnection: the
  // connection is back (to the same peer or a new one on the same endpoint).
  bool reconnected();

 private:
  zmq::socket_ref watched_;
  zmq::socket_t events_;
  bool lost_ = false;  // a disconnection seen, no handshake since
};

// Starts watching `watched` in `watch` when `endpoint` is tcp or ipc; inproc has no connection
// events, so there it leaves `watch` empty.
void watch_connection(std::optional<ConnectionWatch>& watch, zmq::context_t& ctx,
                      zmq::socket_ref watched, const std::string& endpoint, const std::string& name);

}  // namespace zyolo
