// The ZeroMQ options of data-plane sockets, from config [sockets]: one place sets them, so every
// broker, worker, client and controller socket behaves alike on tcp and ipc (inproc ignores the
// reconnect and heartbeat ones). The pipes between actors and the simulated network of the link
// keep their own fixed options.
#pragma once

#include <zmq.hpp>

#include "src/config/config.hpp"

namespace zyolo {

// The ZAP domains of the broker's CURVE server sockets (threads/zap.cpp vets each): its frontend,
// backend and control, where the allow-list's keys come in; and a broker pair's state channel
// (ha.bind), where only the other broker of the pair does.
inline constexpr const char* kZapDomain = "zyolo";
inline constexpr const char* kZapDomainHa = "zyolo-ha";

// Which way a socket faces: the broker's sockets bind, every other one connects.
enum class Side { Binds, Connects };

// Sets linger, high-water marks, reconnect interval and its back-off ceiling, ZMTP heartbeats
// and the largest frame a peer may send (broker.max_message_bytes) on `socket`. With CURVE on
// (config.curve settled, src/wire/curve.hpp) a binding socket is a CURVE server whose peers the ZAP
// handler vets (domain kZapDomain), and a connecting one a CURVE client of the broker's public key.
void apply_socket_options(zmq::socket_ref socket, const Config& config, Side side);

// Over inproc a connection does not come back when its peer binds again in the same context (tcp
// and ipc reconnect by themselves): for an inproc `endpoint`, `socket` is disconnected from it and
// connected anew, so that a peer restarted in this process (zyolo run --ha) is reached again;
// any other endpoint is left alone.
void reconnect_inproc(zmq::socket_ref socket, const std::string& endpoint);

}  // namespace zyolo
