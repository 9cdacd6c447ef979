// CURVE key files and config [curve]: see curve.hpp.
#include "src/wire/curve.hpp"

#include <fmt/format.h>
#include <sys/stat.h>
#include <zmq.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <toml++/toml.h>

namespace zyolo {
namespace {

namespace fs = std::filesystem;

// True if `z85` is the Z85 text of a 32-byte key.
bool is_z85_key(const std::string& z85) {
  if (z85.size() != 40) return false;
  uint8_t key[32];
  return zmq_z85_decode(key, z85.c_str()) != nullptr;
}

// The TOML table of a key file; `what` names where its path came from, for errors.
toml::table parse_key_file(const std::string& path, const std::string& what) {
  if (path.empty()) throw ConfigError(fmt::format("{}: no key file given", what));
  if (!fs::is_regular_file(path))
    throw ConfigError(fmt::format("{} {}: no such key file (zyolo keygen NAME writes NAME.key and NAME.pub)",
                                  what, path));
  try {
    return toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    throw ConfigError(fmt::format("{} {}: not a zyolo key file: {}", what, path, e.description()));
  }
}

// The Z85 key under `name` in a key file, checked.
std::string key_in(const toml::table& table, const char* name, const std::string& path,
                   const std::string& what) {
  const auto value = table[name].value<std::string>();
  if (!value) throw ConfigError(fmt::format("{} {}: has no '{}' key", what, path, name));
  if (!is_z85_key(*value))
    throw ConfigError(fmt::format("{} {}: '{}' is not a CURVE key (40 characters of Z85)", what, path, name));
  return *value;
}

void write_file(const std::string& path, const std::string& text, fs::perms perms) {
  {
    std::ofstream out(path, std::ios::trunc);
    if (!out) throw ConfigError(fmt::format("cannot write {}", path));
    fs::permissions(path, perms, fs::perm_options::replace);  // before the secret goes in
    out << text;
    if (!out.flush()) throw ConfigError(fmt::format("cannot write {}", path));
  }
}

}  // namespace

CurveKeyPair generate_key_pair() {
  char public_key[41], secret_key[41];
  if (zmq_curve_keypair(public_key, secret_key) != 0)
    throw ConfigError(fmt::format("cannot make a CURVE key pair: {}", zmq_strerror(zmq_errno())));
  return {public_key, secret_key};
}

std::vector<std::string> write_key_files(const std::string& dir, const std::string& name,
                                         bool overwrite) {
  if (name.empty() || name.find('/') != std::string::npos || name.starts_with('.'))
    throw ConfigError(fmt::format("keygen: '{}' must be a plain file name (no '/', not starting with '.')", name));
  if (!fs::is_directory(dir)) throw ConfigError(fmt::format("keygen --dir {}: no such folder", dir));
  const std::string key_path = (fs::path(dir) / (name + ".key")).string();
  const std::string pub_path = (fs::path(dir) / (name + ".pub")).string();
  for (const auto& path : {key_path, pub_path})
    if (!overwrite && fs::exists(path))
      throw ConfigError(fmt::format("keygen: {} exists; a new key would lock its holder out "
                                    "(--force replaces it)", path));
  const CurveKeyPair pair = generate_key_pair();
  write_file(key_path,
             fmt::format("# zyolo CURVE key pair '{}' (zyolo keygen). SECRET: keep it on the host that\n"
                         "# uses it, readable by its owner only. Its public half is {}.pub.\n"
                         "public = \"{}\"\nsecret = \"{}\"\n",
                         name, name, pair.public_key, pair.secret_key),
             fs::perms::owner_read | fs::perms::owner_write);
  write_file(pub_path,
             fmt::format("# zyolo CURVE public key '{}' (zyolo keygen). Public: a client's or worker's goes\n"
                         "# into the broker's --allow folder; the broker's is its peers' --server-key.\n"
                         "public = \"{}\"\n",
                         name, pair.public_key),
             fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read | fs::perms::others_read);
  return {key_path, pub_path};
}

CurveKeyPair read_key_pair(const std::string& path, const std::string& what) {
  const toml::table table = parse_key_file(path, what);
  if (!table.contains("secret"))
    throw ConfigError(fmt::format("{} {}: has no 'secret' key: give the NAME.key of 'zyolo keygen', not NAME.pub",
                                  what, path));
  CurveKeyPair pair{key_in(table, "public", path, what), key_in(table, "secret", path, what)};
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && (st.st_mode & (S_IRWXG | S_IRWXO)) != 0)
    throw ConfigError(fmt::format("{} {}: a secret key readable by others is no secret; chmod 600 {}",
                                  what, path, path));
  char derived[41];
  if (zmq_curve_public(derived, pair.secret_key.c_str()) != 0 || pair.public_key != derived)
    throw ConfigError(fmt::format("{} {}: its public key is not the secret key's", what, path));
  return pair;
}

std::string read_public_key(const std::string& path, const std::string& what) {
  return key_in(parse_key_file(path, what), "public", path, what);
}

std::vector<std::string> read_allow_list(const std::string& dir) {
  const std::string what = "--allow (curve.allow)";
  if (!fs::is_directory(dir)) throw ConfigError(fmt::format("{} {}: no such folder", what, dir));
  std::vector<std::string> keys;
  for (const auto& entry : fs::directory_iterator(dir))
    if (entry.path().extension() == ".pub") keys.push_back(read_public_key(entry.path().string(), what));
  if (keys.empty())
    throw ConfigError(fmt::format("{} {}: holds no .pub files, so no client or worker could connect", what, dir));
  std::sort(keys.begin(), keys.end());
  keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
  return keys;
}

void settle_curve(Config& config, CurveRole role) {
  auto& c = config.curve;
  if (role == CurveRole::None) {
    if (!c.key.empty() || !c.server_key.empty() || !c.allow.empty())
      throw ConfigError("[curve] secures a fleet spread over processes (zyolo broker, workers, clients); "
                        "zyolo run keeps its actors in one process");
    return;
  }
  const bool broker = role == CurveRole::Broker;
  if (!c.enabled()) {
    if (!c.server_key.empty() || !c.allow.empty())
      throw ConfigError(fmt::format("{} needs --curve (curve.key): this process's own key pair",
                                    broker ? "--allow (curve.allow)" : "--server-key (curve.server_key)"));
    return;
  }
  if (config.run.transport == "inproc")
    throw ConfigError("--curve (curve.key): CURVE secures tcp and ipc; inproc stays inside one process");
  const CurveKeyPair own = read_key_pair(c.key, "--curve (curve.key)");
  c.public_key = own.public_key;
  c.secret_key = own.secret_key;
  if (broker) {
    if (c.allow.empty())
      throw ConfigError("--curve on the broker needs --allow DIR (curve.allow): the public keys it lets in");
    c.allowed = read_allow_list(c.allow);
  } else {
    if (c.server_key.empty())
      throw ConfigError("--curve needs --server-key FILE (curve.server_key): the broker's public key (its .pub)");
    c.server_public_key = read_public_key(c.server_key, "--server-key (curve.server_key)");
  }
}

}  // namespace zyolo
