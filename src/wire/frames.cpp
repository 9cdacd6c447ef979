// Frames, faults and socket I/O: see frames.hpp.
#include "src/wire/frames.hpp"

#include <cassert>
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

void handing_over(std::span<zmq::message_t> frames) {
#if defined(__SANITIZE_THREAD__)
  for (auto& f : frames) __tsan_release(token_of(f));
#else
  (void)frames;
#endif
}

void taking_over(std::span<zmq::message_t> frames) {
#if defined(__SANITIZE_THREAD__)
  for (auto& f : frames) __tsan_acquire(token_of(f));
#else
  (void)frames;
#endif
}

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
    case Fault::BadArguments: return "bad arguments";
  }
  return "?";
}

bool send_frames(zmq::socket_ref socket, Frames& frames, zmq::send_flags flags) {
  handing_over(frames);
  return zmq::send_multipart(socket, frames, flags).has_value();
}


bool recv_frames_into(zmq::socket_ref socket, Frames& frames, zmq::recv_flags flags) {
  frames.clear();
  if (!zmq::recv_multipart(socket, std::back_inserter(frames), flags)) return false;
  taking_over(frames);
  return true;
}

bool send_parts(zmq::socket_ref socket, std::span<zmq::message_t> head,
                std::span<zmq::message_t> body, BodyBy by, zmq::send_flags flags) {
  handing_over(head);
  handing_over(body);
  const std::size_t n = head.size() + body.size();
  for (std::size_t i = 0; i < n; ++i) {
    const auto more = i + 1 < n ? flags | zmq::send_flags::sndmore : flags;
    zmq::message_t shared;
    zmq::message_t* part = &shared;
    if (i < head.size())
      part = &head[i];
    else if (by == BodyBy::Moving)
      part = &body[i - head.size()];
    else
      shared.copy(body[i - head.size()]);
    if (!socket.send(*part, more)) {
      assert(i == 0);  // a message's first frame decides; the rest always follow
      return false;
    }
  }
  return true;
}

std::optional<Frames> recv_frames(zmq::socket_ref socket, zmq::recv_flags flags) {
  Frames frames;
  if (!recv_frames_into(socket, frames, flags)) return std::nullopt;
  return frames;
}

std::size_t frames_bytes(const Frames& frames) {
  std::size_t n = 0;
  for (const auto& f : frames) n += f.size();
  return n;
}

zmq::message_t frame(std::string_view text) { return zmq::message_t(text.data(), text.size()); }

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

Frames concat(Frames head, Frames tail) {
  head.reserve(head.size() + tail.size());
  for (auto& f : tail) head.push_back(std::move(f));
  return head;
}

std::optional<Routed> split_routed(Frames frames) {
  if (frames.size() < 2) return std::nullopt;
  Routed r{std::move(frames.front()), {}};
  r.frames.reserve(frames.size() - 1);
  for (std::size_t i = 1; i < frames.size(); ++i) r.frames.push_back(std::move(frames[i]));
  return r;
}

Frames join_routed(zmq::message_t peer, Frames frames) {
  Frames head;
  head.push_back(std::move(peer));
  return concat(std::move(head), std::move(frames));
}

}  // namespace zyolo
