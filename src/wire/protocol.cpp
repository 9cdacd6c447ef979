// The MDP/0.1 codec, the shared queue's frames and the zyolo envelope. Every decoder checks every
// bound and returns a Fault rather than throwing.
#include "src/wire/protocol.hpp"

#include <algorithm>
#include <cassert>
#include <charconv>
#include <cstring>

#include <fmt/format.h>

namespace zyolo {
namespace {

zmq::message_t share(const zmq::message_t& m) {
  zmq::message_t copy;
  copy.copy(const_cast<zmq::message_t&>(m));  // reference-counted for large messages
  return copy;
}

bool printable(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c > 0x20 && c < 0x7f; });
}

// Checks the [""][protocol] prefix starting at frames[at].
std::optional<Fault> check_prefix(const Frames& frames, std::size_t at, std::string_view proto) {
  if (frames.size() <= at) return Fault::MissingDelimiter;
  if (frames[at].size() != 0) return Fault::MissingDelimiter;
  if (frames.size() <= at + 1) return Fault::WrongProtocol;
  if (frames[at + 1].to_string_view() != proto) return Fault::WrongProtocol;
  return std::nullopt;
}

// The faults every MDP message is checked for first, from frames[at]: an empty message (none, or
// one empty frame) and more frames than any message of the protocol has.
std::optional<Fault> check_shape(const Frames& frames, std::size_t at) {
  if (frames.size() <= at) return frames.empty() ? std::optional(Fault::Empty) : std::nullopt;
  if (frames.size() == at + 1 && frames[at].size() == 0) return Fault::Empty;
  if (frames.size() > at + kMaxMdpFrames) return Fault::TooManyFrames;
  return std::nullopt;
}

// Decodes [""]["MDPC01"][service][body...] from frames[at], in place.
Decoded<ClientRequestView> view_client(Frames& frames, std::size_t at) {
  if (auto f = check_shape(frames, at)) return *f;
  if (auto f = check_prefix(frames, at, kMdpClient)) return *f;
  if (frames.size() <= at + 2) return Fault::MissingFrame;
  if (frames.size() > at + 3 + kMaxBodyFrames) return Fault::TooManyFrames;
  ClientRequestView v;
  v.service = frames[at + 2].to_string_view();
  if (v.service.empty() || v.service.size() > kMaxServiceBytes) return Fault::BadService;
  if (at == 1) v.sender = &frames[0];
  v.body = std::span<zmq::message_t>(frames).subspan(at + 3);
  return v;
}

// The same, moved out into a message of its own.
Decoded<ClientMessage> decode_client(Frames frames, std::size_t at) {
  auto v = view_client(frames, at);
  if (!v) return v.fault();
  ClientMessage m;
  m.service = std::string(v->service);
  if (v->sender) m.sender = std::move(*v->sender);
  for (auto& f : v->body) m.body.push_back(std::move(f));
  return m;
}

// Decodes [""]["MDPW01"][command]... from frames[at], in place; `from_worker` picks the valid
// commands.
Decoded<WorkerMessageView> view_worker(Frames& frames, std::size_t at, bool from_worker) {
  if (auto f = check_shape(frames, at)) return *f;
  if (auto f = check_prefix(frames, at, kMdpWorker)) return *f;
  if (frames.size() <= at + 2) return Fault::MissingFrame;
  const auto& cmd = frames[at + 2];
  if (cmd.size() != 1) return Fault::UnknownCommand;
  const auto byte = *static_cast<const uint8_t*>(cmd.data());
  if (byte < 0x01 || byte > 0x05) return Fault::UnknownCommand;
  WorkerMessageView v;
  v.command = static_cast<Command>(byte);
  if (at == 1) v.peer = &frames[0];
  const std::size_t rest = frames.size() - (at + 3);
  switch (v.command) {
    case Command::Ready:
      if (!from_worker) return Fault::UnknownCommand;
      if (rest < 1) return Fault::MissingFrame;
      if (rest > 1) return Fault::TooManyFrames;
      v.service = frames[at + 3].to_string_view();
      if (v.service.empty() || v.service.size() > kMaxServiceBytes) return Fault::BadService;
      return v;
    case Command::Request:
    case Command::Reply: {
      if ((v.command == Command::Reply) != from_worker) return Fault::UnknownCommand;
      if (rest < 2) return Fault::MissingFrame;
      if (rest > 2 + kMaxBodyFrames) return Fault::TooManyFrames;
      if (frames[at + 4].size() != 0) return Fault::MissingDelimiter;
      v.client = &frames[at + 3];
      if (v.client->size() == 0) return Fault::MissingFrame;
      v.body = std::span<zmq::message_t>(frames).subspan(at + 5);
      return v;
    }
    case Command::Heartbeat:
    case Command::Disconnect:
      if (rest > 0) return Fault::TooManyFrames;
      return v;
  }
  return Fault::UnknownCommand;
}

// The same, moved out into a message of its own.
Decoded<WorkerMessage> decode_worker(Frames frames, std::size_t at, bool from_worker) {
  auto v = view_worker(frames, at, from_worker);
  if (!v) return v.fault();
  WorkerMessage m;
  m.command = v->command;
  m.service = std::string(v->service);
  if (v->peer) m.peer = std::move(*v->peer);
  if (v->client) m.client = std::move(*v->client);
  for (auto& f : v->body) m.body.push_back(std::move(f));
  return m;
}

// The frames in front of a REQUEST's body: [peer][""]["MDPW01"][0x02][client][""].
std::array<zmq::message_t, 6> broker_request_head(const zmq::message_t& peer,
                                                  const zmq::message_t& client) {
  const auto byte = static_cast<uint8_t>(Command::Request);
  return {share(peer), zmq::message_t(), frame(kMdpWorker), zmq::message_t(&byte, 1),
          share(client), zmq::message_t()};
}

// The frames in front of a client reply's body: [client][""]["MDPC01"][service].
std::array<zmq::message_t, 4> client_reply_head(const zmq::message_t& client,
                                                std::string_view service) {
  return {share(client), zmq::message_t(), frame(kMdpClient), frame(service)};
}

bool valid_id(std::string_view id) {
  return !id.empty() && id.size() <= kMaxIdBytes && printable(id);
}

}  // namespace

std::string_view command_name(Command c) {
  switch (c) {
    case Command::Ready: return "READY";
    case Command::Request: return "REQUEST";
    case Command::Reply: return "REPLY";
    case Command::Heartbeat: return "HEARTBEAT";
    case Command::Disconnect: return "DISCONNECT";
  }
  return "?";
}

Frames encode_client_request(std::string_view service, Frames body) {
  Frames head;
  head.emplace_back();
  head.push_back(frame(kMdpClient));
  head.push_back(frame(service));
  return concat(std::move(head), std::move(body));
}

Frames encode_client_reply(const zmq::message_t& client, std::string_view service, Frames body) {
  auto head = client_reply_head(client, service);
  return concat(Frames(std::make_move_iterator(head.begin()), std::make_move_iterator(head.end())),
                std::move(body));
}

bool send_client_reply(zmq::socket_ref frontend, const zmq::message_t& client,
                       std::string_view service, std::span<zmq::message_t> body,
                       zmq::send_flags flags) {
  auto head = client_reply_head(client, service);
  return send_parts(frontend, head, body, BodyBy::Moving, flags);
}

Decoded<ClientRequestView> view_client_request(Frames& frames) {
  if (frames.empty()) return Fault::Empty;
  return view_client(frames, 1);
}

Decoded<WorkerMessageView> view_from_worker(Frames& frames) {
  if (frames.empty()) return Fault::Empty;
  return view_worker(frames, 1, true);
}

Decoded<ClientMessage> decode_client_request(Frames frames) {
  if (frames.empty()) return Fault::Empty;
  return decode_client(std::move(frames), 1);
}

Decoded<ClientMessage> decode_client_reply(Frames frames) {
  return decode_client(std::move(frames), 0);
}

Frames encode_worker_command(Command c) {
  Frames f;
  f.emplace_back();
  f.push_back(frame(kMdpWorker));
  const auto byte = static_cast<uint8_t>(c);
  f.emplace_back(&byte, 1);
  return f;
}

Frames encode_worker_ready(std::string_view service) {
  Frames f = encode_worker_command(Command::Ready);
  f.push_back(frame(service));
  return f;
}

Frames encode_worker_reply(zmq::message_t client, Frames body) {
  Frames f = encode_worker_command(Command::Reply);
  f.push_back(std::move(client));
  f.emplace_back();
  return concat(std::move(f), std::move(body));
}

Frames encode_broker_command(const zmq::message_t& peer, Command c) {
  Frames head;
  head.push_back(share(peer));
  return concat(std::move(head), encode_worker_command(c));
}

Frames encode_broker_request(const zmq::message_t& peer, zmq::message_t client, Frames body) {
  auto head = broker_request_head(peer, client);
  return concat(Frames(std::make_move_iterator(head.begin()), std::make_move_iterator(head.end())),
                std::move(body));
}

bool send_broker_request(zmq::socket_ref backend, const zmq::message_t& peer,
                         const zmq::message_t& client, std::span<zmq::message_t> body,
                         zmq::send_flags flags) {
  auto head = broker_request_head(peer, client);
  return send_parts(backend, head, body, BodyBy::Sharing, flags);
}

Decoded<WorkerMessage> decode_from_worker(Frames frames) {
  if (frames.empty()) return Fault::Empty;
  return decode_worker(std::move(frames), 1, true);
}

Decoded<WorkerMessage> decode_from_broker(Frames frames) {
  return decode_worker(std::move(frames), 0, false);
}

Decoded<ClientMessage> decode_rep_request(Frames frames) {
  if (frames.empty()) return Fault::Empty;
  frames.insert(frames.begin(), zmq::message_t());  // the delimiter the REP socket took off
  return decode_client(std::move(frames), 0);
}

Frames encode_rep_reply(std::string_view service, Frames body) {
  Frames head;
  head.push_back(frame(kMdpClient));
  head.push_back(frame(service));
  return concat(std::move(head), std::move(body));
}

Frames encode_proxy_command(ProxyCommand c) {
  return text_frames({c == ProxyCommand::Terminate ? "TERMINATE" : "STATISTICS"});
}

Decoded<ProxyStatistics> decode_proxy_statistics(const Frames& frames) {
  if (frames.size() < 8) return Fault::MissingFrame;
  if (frames.size() > 8) return Fault::TooManyFrames;
  uint64_t v[8];
  for (std::size_t i = 0; i < 8; ++i) {
    if (frames[i].size() != sizeof(uint64_t)) return Fault::BadEnvelope;
    std::memcpy(&v[i], frames[i].data(), sizeof(uint64_t));
  }
  return ProxyStatistics{{v[0], v[1], v[2], v[3]}, {v[4], v[5], v[6], v[7]}};
}

Frames encode_app_request(std::string_view id, std::string_view options, zmq::message_t payload) {
  Frames f;
  f.push_back(frame(id));
  f.push_back(frame(options));
  f.push_back(std::move(payload));
  return f;
}

Frames encode_app_reply(std::string_view id, int status, std::string_view json,
                        zmq::message_t payload) {
  assert(status >= 100 && status <= 999);
  Frames f;
  f.push_back(frame(id));
  f.push_back(frame(std::to_string(status)));
  f.push_back(frame(json));
  f.push_back(std::move(payload));
  return f;
}

Decoded<AppRequest> decode_app_request(Frames body) {
  if (body.size() != 3) return Fault::BadEnvelope;
  AppRequest r;
  r.id = to_string(body[0]);
  if (!valid_id(r.id)) return Fault::BadId;
  r.options = to_string(body[1]);
  r.payload = std::move(body[2]);
  return r;
}

Decoded<AppReply> decode_app_reply(Frames body) {
  if (body.size() != 4) return Fault::BadEnvelope;
  AppReply r;
  r.id = to_string(body[0]);
  if (!valid_id(r.id)) return Fault::BadId;
  // 100..999 as exactly three digits: a leading zero ("040") would decode to a status that
  // encode_app_reply writes as two digits, which no decoder accepts (found by fuzz/fuzz_codec).
  const auto status = body[1].to_string_view();
  const auto digit = [](char c) { return c >= '0' && c <= '9'; };
  if (status.size() != 3 || !std::all_of(status.begin(), status.end(), digit) || status[0] == '0')
    return Fault::BadStatus;
  std::from_chars(status.data(), status.data() + status.size(), r.status);
  r.json = to_string(body[2]);
  r.payload = std::move(body[3]);
  return r;
}

std::string make_routing_id(std::string_view node, unsigned instance, long generation) {
  return generation < 0 ? fmt::format("{}-{:08x}", node, instance)
                        : fmt::format("{}-{:08x}-{}", node, instance, generation);
}

std::string node_of_routing_id(std::string_view routing_id) {
  return std::string(routing_id.substr(0, routing_id.find('-')));
}

std::string mmi_asked_service(const Frames& body) {
  return body.empty() ? std::string() : to_string(body[0]);
}

Frames encode_mmi_reply(std::string_view code) { return text_frames({code}); }

std::string_view peek_request_id(std::span<const zmq::message_t> body) {
  if (body.size() != 3 && body.size() != 4) return {};  // not zyolo's request or reply envelope
  const auto id = body[0].to_string_view();
  return valid_id(id) ? id : std::string_view();
}

std::size_t peek_reply_status(std::span<const zmq::message_t> body) {
  constexpr std::size_t other = std::size(kReplyStatuses) - 1;
  if (body.size() < 2) return other;
  const auto status = body[1].to_string_view();
  for (std::size_t i = 0; i < other; ++i)
    if (status == kReplyStatuses[i]) return i;
  return other;
}

namespace {
constexpr const char* kStageKeys[] = {"decode", "pre", "inference", "post"};
}  // namespace

std::string encode_app_result(const AppResult& r) {
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  if (!r.error.empty()) j["error"] = r.error;
  if (!r.worker.empty()) j["worker"] = r.worker;
  if (!r.service.empty()) j["service"] = r.service;
  if (r.width || r.height) {
    j["width"] = r.width;
    j["height"] = r.height;
  }
  if (r.detections) j["detections"] = *r.detections;
  if (r.times_ms) {
    auto& t = j["times_ms"] = nlohmann::ordered_json::object();
    for (std::size_t i = 0; i < 4; ++i) t[kStageKeys[i]] = (*r.times_ms)[i];
  }
  return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

Decoded<AppResult> decode_app_result(std::string_view json) {
  const auto j = nlohmann::ordered_json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return Fault::BadEnvelope;
  AppResult r;
  auto text = [&](const char* key, std::string& out) {
    if (auto it = j.find(key); it != j.end() && it->is_string()) out = it->get<std::string>();
  };
  text("error", r.error);
  text("worker", r.worker);
  text("service", r.service);
  if (auto it = j.find("width"); it != j.end() && it->is_number_integer()) r.width = it->get<int>();
  if (auto it = j.find("height"); it != j.end() && it->is_number_integer()) r.height = it->get<int>();
  if (auto it = j.find("detections"); it != j.end() && it->is_array()) r.detections = *it;
  if (auto it = j.find("times_ms"); it != j.end() && it->is_object()) {
    std::array<double, 4> t{};
    for (std::size_t i = 0; i < 4; ++i)
      if (auto s = it->find(kStageKeys[i]); s != it->end() && s->is_number()) t[i] = s->get<double>();
    r.times_ms = t;
  }
  return r;
}

}  // namespace zyolo
