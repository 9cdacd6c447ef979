// The pipe commands and their typed arguments: see pipe.hpp.
#include "src/wire/pipe.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>

namespace zyolo {
namespace {

// Each command's name, in the enum's order: one table, checked against the enum's size.
constexpr std::array<std::string_view, kPipeCommandCount> kPipeNames = {
    "$READY", "$ERROR", "$TERM",  "STATS", "RECORDS", "DONE",  "DETECTIONS",
    "CRASH",  "FREEZE", "RETIRE", "RULE",  "DEMAND",  "SCALE", "EXPOSE", "HA"};
constexpr bool all_named() {
  for (auto name : kPipeNames)
    if (name.empty()) return false;
  return true;
}
static_assert(all_named() && kPipeNames[static_cast<int>(PipeCommand::Ha)] == "HA",
              "kPipeNames follows PipeCommand: one name for each command, in its order");

constexpr std::array<std::string_view, 3> kLinkModes = {"partition", "drop", "delay"};
constexpr std::array<std::string_view, 3> kHaNoteKinds = {"transition", "anomaly", "peer-lost"};
// The states a broker of a pair is in (src/wire/binary_star.hpp names them the same).
constexpr std::array<std::string_view, 4> kHaStates = {"PRIMARY", "BACKUP", "ACTIVE", "PASSIVE"};

// A whole decimal number from text, within [lo, hi].
std::optional<long> whole_number(std::string_view s, long lo, long hi) {
  long v = 0;
  const auto [end, error] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (error != std::errc() || end != s.data() + s.size() || v < lo || v > hi) return std::nullopt;
  return v;
}

// A finite decimal number from text, within [lo, hi].
std::optional<double> real_number(std::string_view s, double lo, double hi) {
  double v = 0;
  const auto [end, error] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (error != std::errc() || end != s.data() + s.size() || !std::isfinite(v) || v < lo || v > hi)
    return std::nullopt;
  return v;
}

// The frame count of a command's arguments: exactly n.
std::optional<Fault> expect_frames(const PipeMessage& m, std::size_t n) {
  if (m.args.size() < n) return Fault::MissingFrame;
  if (m.args.size() > n) return Fault::TooManyFrames;
  return std::nullopt;
}

// A node id: c (client) or w (worker) and a number, e.g. "w1".
bool node_id(std::string_view id) {
  return id.size() >= 2 && (id[0] == 'c' || id[0] == 'w') &&
         id.find_first_not_of("0123456789", 1) == std::string_view::npos;
}

constexpr long kMaxRuleMs = 86'400'000;  // a day: longer than any run a link plays

}  // namespace

std::string_view pipe_command_name(PipeCommand c) { return kPipeNames[static_cast<std::size_t>(c)]; }

Frames encode_pipe(PipeCommand c, Frames args) {
  Frames f;
  f.push_back(frame(pipe_command_name(c)));
  return concat(std::move(f), std::move(args));
}

Decoded<PipeMessage> decode_pipe(Frames frames) {
  if (frames.empty()) return Fault::Empty;
  const auto name = frames[0].to_string_view();
  for (std::size_t i = 0; i < kPipeNames.size(); ++i) {
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

Frames args_of(const ErrorText& e) { return text_frames({e.text}); }

template <>
Decoded<ErrorText> decode_args<ErrorText>(const PipeMessage& m) {
  if (auto f = expect_frames(m, 1)) return *f;
  return ErrorText{to_string(m.args[0])};
}

Frames args_of(const Exposed& e) { return text_frames({e.families, e.unhealthy, e.unready}); }

template <>
Decoded<Exposed> decode_args<Exposed>(const PipeMessage& m) {
  if (auto f = expect_frames(m, 3)) return *f;
  return Exposed{m.args[0].to_string(), m.args[1].to_string(), m.args[2].to_string()};
}

std::string_view ha_note_kind_name(HaNote::Kind k) { return kHaNoteKinds[static_cast<std::size_t>(k)]; }

Frames args_of(const HaNote& n) { return text_frames({ha_note_kind_name(n.kind), n.from, n.to, n.text}); }

template <>
Decoded<HaNote> decode_args<HaNote>(const PipeMessage& m) {
  if (auto f = expect_frames(m, 4)) return *f;
  const auto kind = std::find(kHaNoteKinds.begin(), kHaNoteKinds.end(), m.args[0].to_string_view());
  if (kind == kHaNoteKinds.end()) return Fault::BadArguments;
  HaNote n{static_cast<HaNote::Kind>(kind - kHaNoteKinds.begin()), m.args[1].to_string(),
           m.args[2].to_string(), to_string(m.args[3])};
  auto state = [](const std::string& s) {
    return std::find(kHaStates.begin(), kHaStates.end(), s) != kHaStates.end();
  };
  // Only a transition changes the state.
  if (!state(n.from) || !state(n.to) || ((n.from != n.to) != (n.kind == HaNote::Kind::Transition)))
    return Fault::BadArguments;
  return n;
}

std::string ha_note_text(const HaNote& n) {
  switch (n.kind) {
    case HaNote::Kind::Transition: return fmt::format("{} -> {} ({})", n.from, n.to, n.text);
    case HaNote::Kind::Anomaly: return n.text;
    case HaNote::Kind::PeerLost: break;
  }
  return fmt::format("{}: {}", n.from, n.text);
}

Frames args_of(const Freeze& f) { return text_frames({std::to_string(f.duration.count())}); }

template <>
Decoded<Freeze> decode_args<Freeze>(const PipeMessage& m) {
  if (auto f = expect_frames(m, 1)) return *f;
  const auto ms = whole_number(m.args[0].to_string_view(), 0, kMaxRuleMs);
  if (!ms) return Fault::BadArguments;
  return Freeze{std::chrono::milliseconds(*ms)};
}

Frames args_of(const CpuClock& c) { return text_frames({std::to_string(c.clock)}); }

template <>
Decoded<CpuClock> decode_args<CpuClock>(const PipeMessage& m) {
  if (auto f = expect_frames(m, 1)) return *f;
  const auto clock = whole_number(m.args[0].to_string_view(), std::numeric_limits<long>::min(),
                                  std::numeric_limits<long>::max());
  if (!clock) return Fault::BadArguments;
  return CpuClock{*clock};
}

bool NodeSet::contains(bool is_client, std::string_view node) const {
  switch (kind) {
    case Kind::All: return true;
    case Kind::Clients: return is_client;
    case Kind::Workers: return !is_client;
    case Kind::Peer: return false;
    case Kind::Ids: break;
  }
  for (const auto& id : ids)
    if (id == node) return true;
  return false;
}

std::optional<NodeSet> parse_nodes(std::string_view text) {
  if (text == "all") return NodeSet{NodeSet::Kind::All, {}};
  if (text == "clients") return NodeSet{NodeSet::Kind::Clients, {}};
  if (text == "workers") return NodeSet{NodeSet::Kind::Workers, {}};
  if (text == "peer") return NodeSet{NodeSet::Kind::Peer, {}};
  NodeSet set{NodeSet::Kind::Ids, {}};
  while (true) {
    const auto comma = text.find(',');
    const auto id = text.substr(0, comma);
    if (!node_id(id)) return std::nullopt;
    set.ids.emplace_back(id);
    if (comma == std::string_view::npos) return set;
    text.remove_prefix(comma + 1);
  }
}

std::string nodes_text(const NodeSet& nodes) {
  switch (nodes.kind) {
    case NodeSet::Kind::All: return "all";
    case NodeSet::Kind::Clients: return "clients";
    case NodeSet::Kind::Workers: return "workers";
    case NodeSet::Kind::Peer: return "peer";
    case NodeSet::Kind::Ids: break;
  }
  std::string text;
  for (const auto& id : nodes.ids) text += (text.empty() ? "" : ",") + id;
  return text;
}

std::string_view link_mode_name(LinkMode m) { return kLinkModes[static_cast<std::size_t>(m)]; }

Frames args_of(const LinkRule& r) {
  const std::string value = fmt::format("{}", r.value);  // the shortest text that reads back exactly
  return text_frames({nodes_text(r.nodes), link_mode_name(r.mode), value,
                      std::to_string(r.duration.count())});
}

template <>
Decoded<LinkRule> decode_args<LinkRule>(const PipeMessage& m) {
  if (auto f = expect_frames(m, 4)) return *f;
  LinkRule r;
  auto nodes = parse_nodes(m.args[0].to_string_view());
  if (!nodes) return Fault::BadArguments;
  r.nodes = std::move(*nodes);
  const auto mode = m.args[1].to_string_view();
  std::size_t i = 0;
  while (i < kLinkModes.size() && kLinkModes[i] != mode) ++i;
  if (i == kLinkModes.size()) return Fault::BadArguments;
  r.mode = static_cast<LinkMode>(i);
  const auto value = real_number(m.args[2].to_string_view(), 0, r.mode == LinkMode::Drop ? 1 : kMaxRuleMs);
  const auto ms = whole_number(m.args[3].to_string_view(), 0, kMaxRuleMs);
  if (!value || !ms) return Fault::BadArguments;
  r.value = *value;
  r.duration = std::chrono::milliseconds(*ms);
  return r;
}

zmq::message_t pack_records(const ClientRecords& records) {
  return zmq::message_t(records.data(), records.size() * sizeof(ClientRecord));
}

std::optional<ClientRecords> unpack_records(const zmq::message_t& blob) {
  if (blob.size() % sizeof(ClientRecord) != 0) return std::nullopt;
  ClientRecords records(blob.size() / sizeof(ClientRecord));
  if (!records.empty()) std::memcpy(records.data(), blob.data(), blob.size());
  return records;
}

Frames args_of(const ClientRecords& records) { return single_frame(pack_records(records)); }

template <>
Decoded<ClientRecords> decode_args<ClientRecords>(const PipeMessage& m) {
  if (auto f = expect_frames(m, 1)) return *f;
  auto records = unpack_records(m.args[0]);
  if (!records) return Fault::BadArguments;
  return std::move(*records);
}

Frames encode_report(uint32_t client, PipeCommand c, Frames args) {
  Frames f;
  f.push_back(frame(std::to_string(client)));
  return concat(std::move(f), encode_pipe(c, std::move(args)));
}

Decoded<ClientReport> decode_report(Frames frames) {
  if (frames.empty()) return Fault::Empty;
  // The index as encode_report writes it, and nothing else ("07" and "-0" are refused).
  const auto text = frames[0].to_string_view();
  const auto client = whole_number(text, 0, std::numeric_limits<uint32_t>::max());
  if (!client || std::to_string(*client) != text) return Fault::BadArguments;
  frames.erase(frames.begin());
  auto m = decode_pipe(std::move(frames));
  if (!m) return m.fault();
  switch (m->command) {
    case PipeCommand::Records:
    case PipeCommand::Detections:
    case PipeCommand::Done:
    case PipeCommand::Stats:
      return ClientReport{static_cast<uint32_t>(*client), std::move(*m)};
    default:
      return Fault::UnknownPipeCommand;
  }
}

Frames args_of(const DetectionLines& d) { return text_frames({d.lines}); }

template <>
Decoded<DetectionLines> decode_args<DetectionLines>(const PipeMessage& m) {
  if (auto f = expect_frames(m, 1)) return *f;
  return DetectionLines{to_string(m.args[0])};
}

}  // namespace zyolo
