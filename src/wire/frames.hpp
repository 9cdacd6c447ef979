// Frames: what every zyolo message is made of, the faults a decoder reports, and the one way a
// zyolo socket sends and receives. The codecs built on these (src/wire/protocol.hpp: MDP/0.1 and
// the zyolo envelope; src/wire/pipe.hpp: the pipe commands and their arguments;
// src/wire/stats.hpp: the counters actors report; src/wire/zap.hpp: ZAP/1.0) are the only files
// of zyolo that index frames or parse what is inside them.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>
#include <zmq.hpp>

namespace zyolo {

using Frames = std::vector<zmq::message_t>;

// What was wrong with a message that could not be decoded. Every fault is counted by who saw it.
enum class Fault {
  Empty,             // no frames at all, or one empty frame (what a socket sends for "")
  MissingDelimiter,  // the empty delimiter frame is missing or not empty
  WrongProtocol,     // the protocol header is not MDPC01 / MDPW01 (or ZAP's 1.0)
  UnknownCommand,    // a worker command byte outside 0x01..0x05, or one not valid in that direction
  MissingFrame,      // fewer frames than the command needs
  TooManyFrames,     // more frames than the command allows
  BadService,        // empty or over-long service name
  BadEnvelope,       // the zyolo body is not [id][options][payload] or [id][status][json][payload]
  BadId,             // request id empty, over-long or not printable
  BadStatus,         // status is not three digits from 100 to 999
  Oversized,         // the frames add up to more bytes than the receiver allows
  UnknownPipeCommand,
  BadArguments,      // a pipe command's arguments are missing, malformed or out of range
};
inline constexpr int kFaultCount = static_cast<int>(Fault::BadArguments) + 1;
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
  const T& value() const { return std::get<T>(v_); }
  T* operator->() { return &std::get<T>(v_); }
  const T* operator->() const { return &std::get<T>(v_); }
  T& operator*() { return std::get<T>(v_); }
  const T& operator*() const { return std::get<T>(v_); }
  Fault fault() const { return std::get<Fault>(v_); }

 private:
  std::variant<T, Fault> v_;
};

// Sends every frame of `frames` as one message; returns false when it could not be sent now
// (EAGAIN with dontwait). Every zyolo socket sends through here.
bool send_frames(zmq::socket_ref socket, Frames& frames,
                 zmq::send_flags flags = zmq::send_flags::none);

// Receives one whole message; nothing when none is waiting (with dontwait). Every zyolo socket
// receives through here. Under ThreadSanitizer these two declare the happens-before edge that a
// message hand-off is (libzmq, not instrumented, makes it invisible to TSan otherwise).
std::optional<Frames> recv_frames(zmq::socket_ref socket,
                                  zmq::recv_flags flags = zmq::recv_flags::none);

// Receives one whole message into `frames`, which is cleared first and keeps its capacity (a loop
// that reuses one Frames allocates nothing per message); false when none is waiting (dontwait).
bool recv_frames_into(zmq::socket_ref socket, Frames& frames,
                      zmq::recv_flags flags = zmq::recv_flags::none);

// How send_parts sends a message's body frames: shared (zmq_msg_copy: reference counted above 33
// bytes, copied below; the caller keeps its own, e.g. to send them again) or moved.
enum class BodyBy { Sharing, Moving };

// Sends `head` then `body` as one message without building a Frames: the head's frames are moved
// out (sent), the body's shared or moved as `by` says. Returns false, having sent nothing, when
// the first frame cannot go now (EAGAIN with dontwait); an error such as a ROUTER's EHOSTUNREACH
// is thrown, again before anything is sent (a ROUTER decides on the first frame; once it takes
// it, it takes the rest of the message).
bool send_parts(zmq::socket_ref socket, std::span<zmq::message_t> head,
                std::span<zmq::message_t> body, BodyBy by,
                zmq::send_flags flags = zmq::send_flags::none);

// The bytes of all frames of a message (what a maximum message size limits).
std::size_t frames_bytes(const Frames& frames);

// One frame holding `text`; frames of text, e.g. text_frames({"a", "b"}); one frame holding `m`.
zmq::message_t frame(std::string_view text);
Frames text_frames(std::initializer_list<std::string_view> texts);
Frames single_frame(zmq::message_t m);

// Appends `tail` to `head`, moving the frames.
Frames concat(Frames head, Frames tail);

// What a ROUTER socket receives and sends: the peer's routing id, then the message's frames.
struct Routed {
  zmq::message_t peer;
  Frames frames;
};
// Splits off the routing id; nothing when no frame follows it.
std::optional<Routed> split_routed(Frames frames);
Frames join_routed(zmq::message_t peer, Frames frames);

// A frame's bytes as a string.
inline std::string to_string(const zmq::message_t& m) { return std::string(m.to_string_view()); }

}  // namespace zyolo
