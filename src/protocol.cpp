// The MDP/0.1 codec, the zyolo envelope and the pipe commands. Every frame index of zyolo is here;
// every decoder checks every bound and returns a Fault rather than throwing.
#include "protocol.hpp"

#include <algorithm>
#include <cassert>
#include <cstring>
#include <zmq_addon.hpp>

#if defined(__SANITIZE_THREAD__)
extern "C" void __tsan_acquire(void* addr);
extern "C" void __tsan_release(void* addr);
#endif

namespace zyolo {
namespace {

// Under TSan: the sender releases, and the receiver acquires, a token picked by each frame's
// bytes. (Not the buffer's address: frames of up to 33 bytes live inside the message struct and
// libzmq copies them, so the two ends see different addresses.) The token table is immutable:
// its addresses are only names for TSan, never read or written.
#if defined(__SANITIZE_THREAD__)
constexpr std::size_t kTokens = 4096;
const char kTokenTable[kTokens] = {};

void* token_of(const zmq::message_t& f) {
  std::size_t h = 1469598103934665603ull;  // FNV-1a over the frame's bytes
  const auto* p = static_cast<const unsigned char*>(f.data());
  for (std::size_t i = 0; i < f.size(); ++i) h = (h ^ p[i]) * 1099511628211ull;
  return const_cast<char*>(&kTokenTable[h % kTokens]);
}
#endif

void handing_over(Frames& frames) {
#if defined(__SANITIZE_THREAD__)
  for (auto& f : frames) __tsan_release(token_of(f));
#else
  (void)frames;
#endif
}

void taking_over(Frames& frames) {
#if defined(__SANITIZE_THREAD__)
  for (auto& f : frames) __tsan_acquire(token_of(f));
#else
  (void)frames;
#endif
}

zmq::message_t frame(std::string_view s) { return zmq::message_t(s.data(), s.size()); }

zmq::message_t share(const zmq::message_t& m) {
  zmq::message_t copy;
  copy.copy(const_cast<zmq::message_t&>(m));  // reference-counted for large messages
  return copy;
}

bool printable(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c > 0x20 && c < 0x7f; });
}

// Appends `tail` to `head`, moving the frames.
Frames concat(Frames head, Frames tail) {
  head.reserve(head.size() + tail.size());
  for (auto& f : tail) head.push_back(std::move(f));
  return head;
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

// Decodes [""]["MDPC01"][service][body...] from frames[at].
Decoded<ClientMessage> decode_client(Frames frames, std::size_t at) {
  if (auto f = check_shape(frames, at)) return *f;
  if (auto f = check_prefix(frames, at, kMdpClient)) return *f;
  if (frames.size() <= at + 2) return Fault::MissingFrame;
  if (frames.size() > at + 3 + kMaxBodyFrames) return Fault::TooManyFrames;
  ClientMessage m;
  m.service = to_string(frames[at + 2]);
  if (m.service.empty() || m.service.size() > kMaxServiceBytes) return Fault::BadService;
  if (at == 1) m.sender = std::move(frames[0]);
  for (std::size_t i = at + 3; i < frames.size(); ++i) m.body.push_back(std::move(frames[i]));
  return m;
}

// Decodes [""]["MDPW01"][command]... from frames[at]; `from_worker` picks the valid commands.
Decoded<WorkerMessage> decode_worker(Frames frames, std::size_t at, bool from_worker) {
  if (auto f = check_shape(frames, at)) return *f;
  if (auto f = check_prefix(frames, at, kMdpWorker)) return *f;
  if (frames.size() <= at + 2) return Fault::MissingFrame;
  const auto& cmd = frames[at + 2];
  if (cmd.size() != 1) return Fault::UnknownCommand;
  const auto byte = *static_cast<const uint8_t*>(cmd.data());
  if (byte < 0x01 || byte > 0x05) return Fault::UnknownCommand;
  WorkerMessage m;
  m.command = static_cast<Command>(byte);
  if (at == 1) m.peer = std::move(frames[0]);
  const std::size_t rest = frames.size() - (at + 3);
  switch (m.command) {
    case Command::Ready:
      if (!from_worker) return Fault::UnknownCommand;
      if (rest < 1) return Fault::MissingFrame;
      if (rest > 1) return Fault::TooManyFrames;
      m.service = to_string(frames[at + 3]);
      if (m.service.empty() || m.service.size() > kMaxServiceBytes) return Fault::BadService;
      return m;
    case Command::Request:
    case Command::Reply: {
      if ((m.command == Command::Reply) != from_worker) return Fault::UnknownCommand;
      if (rest < 2) return Fault::MissingFrame;
      if (rest > 2 + kMaxBodyFrames) return Fault::TooManyFrames;
      if (frames[at + 4].size() != 0) return Fault::MissingDelimiter;
      m.client = std::move(frames[at + 3]);
      if (m.client.size() == 0) return Fault::MissingFrame;
      for (std::size_t i = at + 5; i < frames.size(); ++i) m.body.push_back(std::move(frames[i]));
      return m;
    }
    case Command::Heartbeat:
    case Command::Disconnect:
      if (rest > 0) return Fault::TooManyFrames;
      return m;
  }
  return Fault::UnknownCommand;
}

bool valid_id(std::string_view id) {
  return !id.empty() && id.size() <= kMaxIdBytes && printable(id);
}

constexpr std::string_view kPipeNames[] = {"$READY", "$ERROR", "$TERM",  "STATS",  "RECORDS",
                                           "DONE",   "DETECTIONS", "CRASH", "FREEZE", "RETIRE",
                                           "RULE",   "DEMAND", "SCALE"};

}  // namespace

std::string_view fault_name(Fault f) {
  switch (f) {
    case Fault::Empty: return "empty message";
    case Fault::MissingDelimiter: return "missing empty delimiter";
    case Fault::WrongProtocol: return "wrong protocol header";
    case Fault::UnknownCommand: return "unknown command";
    case Fault::MissingFrame: return "missing frame";
    case Fault::TooManyFrames: return "too many frames";
    case Fault::BadService: return "bad service name";
    case Fault::BadEnvelope: return "bad zyolo envelope";
    case Fault::BadId: return "bad request id";
    case Fault::BadStatus: return "bad status";
    case Fault::Oversized: return "oversized message";
    case Fault::UnknownPipeCommand: return "unknown pipe command";
  }
  return "?";
}

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
  Frames head;
  head.push_back(share(client));
  return concat(std::move(head), encode_client_request(service, std::move(body)));
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
  Frames f = encode_broker_command(peer, Command::Request);
  f.push_back(std::move(client));
  f.emplace_back();
  return concat(std::move(f), std::move(body));
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
  r.status = std::stoi(std::string(status));
  r.json = to_string(body[2]);
  r.payload = std::move(body[3]);
  return r;
}

std::string peek_request_id(const Frames& body) {
  if (body.empty()) return {};
  const auto id = body[0].to_string_view();
  return valid_id(id) ? std::string(id) : std::string();
}

std::size_t frames_bytes(const Frames& frames) {
  std::size_t n = 0;
  for (const auto& f : frames) n += f.size();
  return n;
}

bool send_frames(zmq::socket_ref socket, Frames& frames, zmq::send_flags flags) {
  handing_over(frames);
  return zmq::send_multipart(socket, frames, flags).has_value();
}

std::optional<Frames> recv_frames(zmq::socket_ref socket, zmq::recv_flags flags) {
  Frames frames;
  if (!zmq::recv_multipart(socket, std::back_inserter(frames), flags)) return std::nullopt;
  taking_over(frames);
  return frames;
}

Frames encode_pipe(PipeCommand c, Frames args) {
  Frames f;
  f.push_back(frame(kPipeNames[static_cast<int>(c)]));
  return concat(std::move(f), std::move(args));
}

Decoded<PipeMessage> decode_pipe(Frames frames) {
  if (frames.empty()) return Fault::Empty;
  const auto name = frames[0].to_string_view();
  for (int i = 0; i < static_cast<int>(std::size(kPipeNames)); ++i) {
    if (name != kPipeNames[i]) continue;
    PipeMessage m;
    m.command = static_cast<PipeCommand>(i);
    for (std::size_t k = 1; k < frames.size(); ++k) m.args.push_back(std::move(frames[k]));
    return m;
  }
  return Fault::UnknownPipeCommand;
}

bool send_pipe(zmq::socket_ref pipe, PipeCommand c, Frames args, zmq::send_flags flags) {
  Frames all = encode_pipe(c, std::move(args));
  return send_frames(pipe, all, flags);
}

Decoded<PipeMessage> recv_pipe(zmq::socket_ref pipe) {
  auto received = recv_frames(pipe);
  if (!received) return Fault::Empty;
  return decode_pipe(std::move(*received));
}

Frames text_frames(std::initializer_list<std::string_view> texts) {
  Frames f;
  for (auto t : texts) f.push_back(frame(t));
  return f;
}

Frames single_frame(zmq::message_t m) {
  Frames f;
  f.push_back(std::move(m));
  return f;
}

zmq::message_t pack_records(const std::vector<ClientRecord>& records) {
  return zmq::message_t(records.data(), records.size() * sizeof(ClientRecord));
}

std::optional<std::vector<ClientRecord>> unpack_records(const zmq::message_t& blob) {
  if (blob.size() % sizeof(ClientRecord) != 0) return std::nullopt;
  std::vector<ClientRecord> records(blob.size() / sizeof(ClientRecord));
  if (!records.empty()) std::memcpy(records.data(), blob.data(), blob.size());
  return records;
}

}  // namespace zyolo
