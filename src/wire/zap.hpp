// ZAP/1.0 (ZeroMQ RFC 27): what libzmq asks a ZAP handler about each peer that completed a
// security handshake with a socket of its context, and what the handler answers.
//
//   request   [version "1.0"] [request id] [domain] [address] [routing id] [mechanism]
//             [credentials ...]            CURVE: one credential, the peer's 32-byte public key
//   reply     [version "1.0"] [request id] [status code] [status text] [user id] [metadata]
//             status code: "200" let in, "300" try again later, "400" refused, "500" error
#pragma once

#include <string>

#include "src/wire/frames.hpp"

namespace zyolo {

// A ZAP request from a CURVE handshake.
struct ZapRequest {
  std::string request_id, domain, address, routing_id;
  std::string public_key;  // the peer's CURVE public key, Z85 (40 characters)
};

// Decodes a ZAP/1.0 request. A version other than 1.0 is Fault::WrongProtocol; a mechanism other
// than CURVE, or a credential that is not one 32-byte key, Fault::BadArguments. The request id
// (frame 2) is kept whatever else is wrong: `request_id` gets it, so a refusal can still answer.
Decoded<ZapRequest> decode_zap_request(const Frames& frames, std::string* request_id);

// A ZAP/1.0 reply: `user` is the user id a let-in peer's messages carry (empty when refused).
Frames encode_zap_reply(std::string_view request_id, std::string_view status,
                        std::string_view text, std::string_view user);

}  // namespace zyolo
