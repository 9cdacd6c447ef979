// CURVE security (ZeroMQ RFC 26, CurveZMQ) for a fleet spread over processes: key files, and the
// settling of config [curve] into keys. The socket options themselves are set with every other
// option in src/wire/sockopts.cpp; the broker's allow-list is enforced by the ZAP handler actor
// (threads/zap.cpp).
//
// Key files are small TOML files that `zyolo keygen NAME` writes:
//   NAME.key  public = "<Z85>"  secret = "<Z85>"   the key pair; secret, mode 0600
//   NAME.pub  public = "<Z85>"                     the public half; safe to copy anywhere
// Z85 is ZeroMQ's text form of a 32-byte key (40 characters, RFC 32).
#pragma once

#include <string>
#include <vector>

#include "src/config/config.hpp"

namespace zyolo {

struct CurveKeyPair {
  std::string public_key, secret_key;  // Z85
};

// A new key pair (zmq_curve_keypair).
CurveKeyPair generate_key_pair();

// Writes DIR/NAME.key (mode 0600) and DIR/NAME.pub; returns their paths. Throws ConfigError if
// either exists (unless `overwrite`), if NAME is not a plain file name, or if DIR is unwritable.
std::vector<std::string> write_key_files(const std::string& dir, const std::string& name,
                                         bool overwrite);

// Reads a NAME.key file: both halves, checked (Z85, and the public half is the secret's). Throws
// ConfigError naming `what` (the flag or key the path came from) if the file is missing, bad,
// or readable by anyone but its owner.
CurveKeyPair read_key_pair(const std::string& path, const std::string& what);
// Reads the public key of a NAME.pub (or NAME.key) file. Throws ConfigError naming `what`.
std::string read_public_key(const std::string& path, const std::string& what);
// Every public key of the *.pub files in `dir`, the broker's allow-list. Throws ConfigError if the
// folder is missing or holds none.
std::vector<std::string> read_allow_list(const std::string& dir);

// Which end of the fleet a process is, for CURVE: the broker binds (it is the CURVE server and
// holds the allow-list); workers and clients connect (CURVE clients of the broker's public key).
// zyolo run keeps every actor in one process and has no use for CURVE.
enum class CurveRole { Broker, Peer, None };

// Loads the files config [curve] names into config.curve's keys, checking that `role` has what
// it needs (a key the role does not use is left alone, so one config file can serve every
// process). Throws ConfigError naming the flag and key.
void settle_curve(Config& config, CurveRole role);

}  // namespace zyolo
