// The wire: Majordomo MDP/0.1 (ZeroMQ RFC 7), zyolo's application envelope inside its bodies, and
// the supervisor's pipe commands. This file and protocol.cpp are the only ones that index frames.
//
// Grammar (frames in brackets; the ROUTER side adds the peer's routing id in front):
//
//   client -> broker   [""] ["MDPC01"] [service] [body ...]
//   broker -> client   [""] ["MDPC01"] [service] [body ...]
//   worker -> broker   [""] ["MDPW01"] [0x01 READY] [service]
//                      [""] ["MDPW01"] [0x03 REPLY] [client address] [""] [body ...]
//                      [""] ["MDPW01"] [0x04 HEARTBEAT]
//                      [""] ["MDPW01"] [0x05 DISCONNECT]
//   broker -> worker   [""] ["MDPW01"] [0x02 REQUEST] [client address] [""] [body ...]
//                      [""] ["MDPW01"] [0x04 HEARTBEAT]
//                      [""] ["MDPW01"] [0x05 DISCONNECT]
//   mmi.service        body [service name]  ->  body ["200"] or ["404"]; other mmi.* -> ["501"]
//
// Shared queue (--broker proxy, threads/proxy.cpp): the same client frames pass a ROUTER/DEALER
// proxy to plain REP workers, whose socket strips and restores the envelope (routing id, "").
//   proxy -> REP worker   ["MDPC01"] [service] [body ...]
//   REP worker -> proxy   ["MDPC01"] [service] [body ...]
//   control -> proxy      ["TERMINATE"] | ["STATISTICS"]   (zmq_proxy_steerable; one frame each)
//   proxy -> control      8 frames of uint64 (host order): frontend messages in, bytes in,
//                         messages out, bytes out; then the same for the backend
//
// zyolo body (inside MDP; see the README for a byte example):
//   request            [request id] [options] [payload]
//   reply              [request id] [status: 3 ASCII digits] [result JSON] [payload]
//   request id: 1..64 printable ASCII bytes; status 200 ok, 400 bad request/image, 500 worker
//   error, 503 busy (queue full), 504 deadline passed (client-side only).
//
// Pipe commands (supervisor <-> actor, inproc PAIR): [command] [argument ...]
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>
#include <zmq.hpp>

namespace zyolo {

using Frames = std::vector<zmq::message_t>;

inline constexpr std::string_view kMdpClient = "MDPC01";
inline constexpr std::string_view kMdpWorker = "MDPW01";
inline constexpr std::size_t kMaxBodyFrames = 16;
inline constexpr std::size_t kMaxIdBytes = 64;
inline constexpr std::size_t kMaxServiceBytes = 255;
// The most frames any MDP message has after the routing id: REQUEST/REPLY with a full body.
inline constexpr std::size_t kMaxMdpFrames = 5 + kMaxBodyFrames;

// What was wrong with a message that could not be decoded. Every fault is counted by who saw it.
enum class Fault {
  Empty,             // no frames at all, or one empty frame (what a socket sends for "")
  MissingDelimiter,  // the empty delimiter frame is missing or not empty
  WrongProtocol,     // the protocol header is not MDPC01 / MDPW01
  UnknownCommand,    // a worker command byte outside 0x01..0x05, or one not valid in that direction
  MissingFrame,      // fewer frames than the command needs
  TooManyFrames,     // more frames than the command allows
  BadService,        // empty or over-long service name
  BadEnvelope,       // the zyolo body is not [id][options][payload] or [id][status][json][payload]
  BadId,             // request id empty, over-long or not printable
  BadStatus,         // status is not three digits from 100 to 999
  Oversized,         // the frames add up to more bytes than the receiver allows
  UnknownPipeCommand,
};
inline constexpr int kFaultCount = static_cast<int>(Fault::UnknownPipeCommand) + 1;
std::string_view fault_name(Fault f);

// A decoded value, or the fault that stopped decoding. Never throws for bad input.
template <class T>
class Decoded {
 public:
  Decoded(T value) : v_(std::move(value)) {}
  Decoded(Fault fault) : v_(fault) {}
  bool ok() const { return std::holds_alternative<T>(v_); }
  explicit operator bool() const { return ok(); }
  T& value() { return std::get<T>(v_); }
  T* operator->() { return &std::get<T>(v_); }
  Fault fault() const { return std::get<Fault>(v_); }

 private:
  std::variant<T, Fault> v_;
};

// --- socket I/O ---------------------------------------------------------------------------------

// Sends every frame of `frames` as one message; returns false when it could not be sent now
// (EAGAIN with dontwait). Every zyolo socket sends through here.
bool send_frames(zmq::socket_ref socket, Frames& frames,
                 zmq::send_flags flags = zmq::send_flags::none);
// The bytes of all frames of a message (what a maximum message size limits).
std::size_t frames_bytes(const Frames& frames);

// Receives one whole message; nothing when none is waiting (with dontwait). Every zyolo socket
// receives through here. Under ThreadSanitizer these two declare the happens-before edge that a
// message hand-off is (libzmq, not instrumented, makes it invisible to TSan otherwise).
std::optional<Frames> recv_frames(zmq::socket_ref socket,
                                  zmq::recv_flags flags = zmq::recv_flags::none);

// --- MDP client side ---------------------------------------------------------------------------

// A client request as the broker's ROUTER sees it, or a reply as a client's DEALER sees it.
struct ClientMessage {
  zmq::message_t sender;  // the client's routing id (broker side only; empty on the client)
  std::string service;
  Frames body;
};

// [""]["MDPC01"][service][body...] for a DEALER client to send.
Frames encode_client_request(std::string_view service, Frames body);
// [sender][""]["MDPC01"][service][body...] for the broker's ROUTER frontend to send.
Frames encode_client_reply(const zmq::message_t& client, std::string_view service, Frames body);
// Decodes what a ROUTER frontend received (routing id first).
Decoded<ClientMessage> decode_client_request(Frames frames);
// Decodes what a DEALER client received.
Decoded<ClientMessage> decode_client_reply(Frames frames);

// --- MDP worker side ---------------------------------------------------------------------------

enum class Command : uint8_t {
  Ready = 0x01,
  Request = 0x02,
  Reply = 0x03,
  Heartbeat = 0x04,
  Disconnect = 0x05,
};
std::string_view command_name(Command c);

struct WorkerMessage {
  zmq::message_t peer;  // the worker's routing id (broker side only)
  Command command = Command::Heartbeat;
  std::string service;    // READY
  zmq::message_t client;  // REQUEST, REPLY: the client's routing id
  Frames body;            // REQUEST, REPLY
};

// Frames a worker (DEALER) sends: READY(service), REPLY(client, body), HEARTBEAT, DISCONNECT.
Frames encode_worker_ready(std::string_view service);
Frames encode_worker_reply(zmq::message_t client, Frames body);
Frames encode_worker_command(Command c);  // HEARTBEAT or DISCONNECT, either direction
// Frames the broker (ROUTER) sends to the worker `peer`.
Frames encode_broker_request(const zmq::message_t& peer, zmq::message_t client, Frames body);
Frames encode_broker_command(const zmq::message_t& peer, Command c);
// Decodes what the broker's ROUTER backend received (routing id first).
Decoded<WorkerMessage> decode_from_worker(Frames frames);
// Decodes what a worker's DEALER received.
Decoded<WorkerMessage> decode_from_broker(Frames frames);

// --- shared queue: REP workers and the proxy's control ---------------------------------------

// Decodes what a REP worker received behind the proxy: [MDPC01][service][body...].
Decoded<ClientMessage> decode_rep_request(Frames frames);
// [MDPC01][service][body...], a REP worker's answer (its socket adds the envelope back).
Frames encode_rep_reply(std::string_view service, Frames body);

// The commands of zmq_proxy_steerable's control socket that zyolo sends. libzmq aborts the
// process on any other command, so nothing else may ever reach that socket.
enum class ProxyCommand { Terminate, Statistics };
Frames encode_proxy_command(ProxyCommand c);

// What zmq_proxy_steerable answers to STATISTICS: messages and bytes each socket forwarded
// (a multipart message counts once).
struct ProxyCounters {
  uint64_t messages_in = 0, bytes_in = 0, messages_out = 0, bytes_out = 0;
};
struct ProxyStatistics {
  ProxyCounters frontend, backend;
};
Decoded<ProxyStatistics> decode_proxy_statistics(const Frames& frames);

// --- zyolo application envelope ----------------------------------------------------------------

struct AppRequest {
  std::string id;
  std::string options;  // JSON text, may be empty
  zmq::message_t payload;
};

struct AppReply {
  std::string id;
  int status = 200;
  std::string json;  // result JSON (detections, timings, worker)
  zmq::message_t payload;
};

Frames encode_app_request(std::string_view id, std::string_view options, zmq::message_t payload);
Frames encode_app_reply(std::string_view id, int status, std::string_view json,
                        zmq::message_t payload = {});
Decoded<AppRequest> decode_app_request(Frames body);
Decoded<AppReply> decode_app_reply(Frames body);
// The request id of a body that may not be a valid request, if it has one ("" otherwise).
std::string peek_request_id(const Frames& body);

// --- supervisor pipe commands ------------------------------------------------------------------

enum class PipeCommand {
  Ready,    // actor -> parent: started, sockets bound/connected
  Error,    // actor -> parent: [message] start-up failed or the actor died
  Term,     // parent -> actor: close your sockets and return
  Stats,    // parent -> actor: report; actor -> parent: [JSON]
  Records,  // client -> parent: [packed ClientRecord array]
  Done,     // client -> parent: [JSON totals] all its requests have ended
  Detections,  // client -> parent: [JSON lines] detections of answered requests (--save-detections)
  // Faults and changes a scenario orders (see src/scenario.hpp):
  Crash,    // parent -> worker: exit in the next request, without DISCONNECT; it says STATS
  Freeze,   // parent -> worker: [milliseconds] hang inside the next request, deaf to the broker
  Retire,   // parent -> client: end the request in flight, send DONE, issue no more;
            // parent -> worker: leave gracefully (DISCONNECT, serve what crossed it), say DONE
  Rule,     // parent -> link: [nodes][partition|drop|delay][value][milliseconds] a network fault
  // Control traffic (threads/controller.cpp):
  Demand,   // broker -> controllers, on the control PUB socket: [JSON] demand per service
  Scale,    // controller -> parent: [JSON] one evaluation: demand and desired workers of a service
};

struct PipeMessage {
  PipeCommand command = PipeCommand::Term;
  Frames args;
};

// One finished request, as a client reports it to the supervisor.
struct ClientRecord {
  int64_t end_us;       // steady-clock time the request ended, microseconds
  uint32_t seq;         // the request's number at its client (request id "<client>-<seq>")
  uint32_t latency_us;  // from first send to the answer (or to the deadline)
  uint16_t status;      // the reply's status, or 504 when the deadline passed
  uint16_t retries;     // resends after a timeout
  // Stage times the worker reported (YOLO workers), microseconds: decode, pre, inference, post.
  uint32_t stage_us[4];
};

// Sends a pipe command; with dontwait, returns false instead of blocking when it cannot be sent.
bool send_pipe(zmq::socket_ref pipe, PipeCommand c, Frames args = {},
               zmq::send_flags flags = zmq::send_flags::none);
// Receives one pipe command, waiting. Returns a fault for an unknown command.
Decoded<PipeMessage> recv_pipe(zmq::socket_ref pipe);
// The frames of a pipe command, and back: what send_pipe and recv_pipe do without a socket.
Frames encode_pipe(PipeCommand c, Frames args = {});
Decoded<PipeMessage> decode_pipe(Frames frames);
zmq::message_t pack_records(const std::vector<ClientRecord>& records);
std::optional<std::vector<ClientRecord>> unpack_records(const zmq::message_t& blob);

// Frames of text, e.g. text_frames({"a", json.dump()}); and one frame holding a message.
Frames text_frames(std::initializer_list<std::string_view> texts);
Frames single_frame(zmq::message_t m);

// Small helpers used by every actor.
inline std::string to_string(const zmq::message_t& m) { return std::string(m.to_string_view()); }

}  // namespace zyolo
