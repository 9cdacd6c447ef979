// The data plane's codec: Majordomo MDP/0.1 (ZeroMQ RFC 7), the shared queue's frames, and
// zyolo's application envelope inside MDP bodies. With the other codecs of src/wire/ (frames.hpp
// says which) these are the only files that index frames.
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
#pragma once

#include <array>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "src/wire/frames.hpp"

namespace zyolo {

inline constexpr std::string_view kMdpClient = "MDPC01";
inline constexpr std::string_view kMdpWorker = "MDPW01";
inline constexpr std::size_t kMaxBodyFrames = 16;
inline constexpr std::size_t kMaxIdBytes = 64;
inline constexpr std::size_t kMaxServiceBytes = 255;
// The most frames any MDP message has after the routing id: REQUEST/REPLY with a full body.
inline constexpr std::size_t kMaxMdpFrames = 5 + kMaxBodyFrames;

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

// --- the broker's hot path: decoded in place, sent without building Frames -----------------------
// The same grammar as above, for a broker that allocates nothing per message: a view points into
// the frames a message came in (valid while they are; the broker moves out what it keeps), and
// the senders write the frames out one by one (send_parts, frames.hpp).

struct ClientRequestView {
  zmq::message_t* sender = nullptr;  // the client's routing id
  std::string_view service;
  std::span<zmq::message_t> body;
};
// What decode_client_request decodes, in place.
Decoded<ClientRequestView> view_client_request(Frames& frames);

struct WorkerMessageView {
  zmq::message_t* peer = nullptr;  // the worker's routing id
  Command command = Command::Heartbeat;
  std::string_view service;          // READY
  zmq::message_t* client = nullptr;  // REPLY: the client's routing id
  std::span<zmq::message_t> body;    // REPLY
};
// What decode_from_worker decodes, in place.
Decoded<WorkerMessageView> view_from_worker(Frames& frames);

// REQUEST to the worker `peer` on the broker's ROUTER backend, what encode_broker_request builds;
// the body is shared, so the caller keeps it (to re-queue). False, nothing sent, when the peer's
// queue is full with dontwait; zmq::error_t (EHOSTUNREACH) when it is gone, nothing sent either.
bool send_broker_request(zmq::socket_ref backend, const zmq::message_t& peer,
                         const zmq::message_t& client, std::span<zmq::message_t> body,
                         zmq::send_flags flags);
// A reply to `client` on the broker's ROUTER frontend, what encode_client_reply builds; the body's
// frames are moved out. Same results as send_broker_request.
bool send_client_reply(zmq::socket_ref frontend, const zmq::message_t& client,
                       std::string_view service, std::span<zmq::message_t> body,
                       zmq::send_flags flags);

// mmi.service (RFC 8): the service a query's body names ("" when none), and the one-frame answer
// ("200", "404" or "501").
std::string mmi_asked_service(const Frames& body);
Frames encode_mmi_reply(std::string_view code);

// zyolo's routing ids: "<node>-<8 hex digits>", and for a worker "-<generation>" after: readable
// in the broker's counters, unique across processes, and for a worker new on each reconnection.
// The node ("w0", "c3") is what the link (threads/link.cpp) reads back out of them.
std::string make_routing_id(std::string_view node, unsigned instance, long generation = -1);
std::string node_of_routing_id(std::string_view routing_id);

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
// The request id of a body that may not be a valid request, if it has one ("" otherwise): a view
// into the body's first frame. Only a body of zyolo's shape, 3 frames (a request) or 4 (a reply),
// has one: a plain RFC 7 body ("Hello world", sent many times at once by the guide's
// asynchronous client) is no request id, and the broker must not take a second one for a retry.
std::string_view peek_request_id(std::span<const zmq::message_t> body);
// The statuses a reply is counted by (the broker's STATS), "other" last for any other, or none.
inline constexpr std::string_view kReplyStatuses[] = {"200", "400", "500", "503", "504", "other"};
// The index in kReplyStatuses of a reply body's status. Reads the second frame only.
std::size_t peek_reply_status(std::span<const zmq::message_t> body);

// The result JSON of a reply: who answered and, from a YOLO worker, what it found in the image
// and how long each stage took; from a request that failed, what went wrong.
//   {"error":...,"worker":...,"service":...,"width":...,"height":...,"detections":[...],
//    "times_ms":{"decode":...,"pre":...,"inference":...,"post":...}}   (each key only when set)
struct AppResult {
  std::string error;  // 400 and 500 replies
  std::string worker, service;
  int width = 0, height = 0;                      // the image's size (YOLO workers)
  std::optional<nlohmann::ordered_json> detections;  // a JSON array (YOLO workers)
  std::optional<std::array<double, 4>> times_ms;  // decode, pre, inference, post

  static AppResult from(std::string worker, std::string service) {
    AppResult r;
    r.worker = std::move(worker);
    r.service = std::move(service);
    return r;
  }
  static AppResult failure(std::string error, std::string worker, std::string service = {}) {
    AppResult r = from(std::move(worker), std::move(service));
    r.error = std::move(error);
    return r;
  }
};
std::string encode_app_result(const AppResult& r);
// Reads what it can: a key that is missing or of another type stays unset (a reply from a worker
// written by someone else may carry any JSON). Fault::BadEnvelope when it is not a JSON object.
Decoded<AppResult> decode_app_result(std::string_view json);

}  // namespace zyolo
