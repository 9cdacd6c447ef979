// The ZAP/1.0 codec: see zap.hpp.
#include "src/wire/zap.hpp"

#include <zmq.h>

namespace zyolo {

Decoded<ZapRequest> decode_zap_request(const Frames& frames, std::string* request_id) {
  if (frames.size() > 1) *request_id = to_string(frames[1]);
  if (frames.empty()) return Fault::Empty;
  if (frames[0].to_string_view() != "1.0") return Fault::WrongProtocol;
  if (frames.size() < 7) return Fault::MissingFrame;
  if (frames.size() > 7) return Fault::TooManyFrames;
  if (frames[5].to_string_view() != "CURVE" || frames[6].size() != 32) return Fault::BadArguments;
  ZapRequest r{to_string(frames[1]), to_string(frames[2]), to_string(frames[3]),
               to_string(frames[4]), std::string(41, '\0')};
  zmq_z85_encode(r.public_key.data(), static_cast<const uint8_t*>(frames[6].data()), 32);
  r.public_key.resize(40);  // without the NUL that zmq_z85_encode writes after the 40 characters
  return r;
}

Frames encode_zap_reply(std::string_view request_id, std::string_view status,
                        std::string_view text, std::string_view user) {
  return text_frames({"1.0", request_id, status, text, user, ""});
}

}  // namespace zyolo
