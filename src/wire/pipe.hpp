// The pipe commands: what a parent and its actor say over their inproc PAIR pipe, what a client
// reports to the supervisor over the one report socket all clients share, and the control
// traffic the broker publishes. Each command's arguments are encoded and decoded here and in
// src/wire/stats.hpp (the counters), typed, so no other file reads a frame of them.
//
//   [command] [argument ...]       the command is its name as text, e.g. "STATS"
//
// Over a pipe:
//   $READY                          actor -> parent: started, sockets bound or connected
//   $ERROR   [message]              actor -> parent: it could not start, or died
//   $TERM                           parent -> actor: close your sockets and return
//   STATS                           parent -> actor: report
//   STATS    [JSON] [...]           actor -> parent: its counters (src/wire/stats.hpp); a client
//                                   answers on the report socket instead (below)
//   DONE     [JSON]                 retiring worker -> parent: its last counters
//   CRASH                           parent -> worker: exit in the next request, no DISCONNECT
//   FREEZE   [milliseconds]         parent -> worker: hang inside the next request that long
//   RETIRE                          parent -> client: end after the request in flight;
//                                   parent -> worker: leave gracefully, then say DONE
//   RULE     [nodes] [mode] [value] [milliseconds]
//                                   parent -> link: partition, drop (value: the fraction) or
//                                   delay (value: ms) the nodes' traffic for that long
//   SCALE    [JSON]                 controller -> parent: one evaluation of one service
//   HA       [kind] [from] [to] [text]
//                                   broker of a pair -> parent: a state change, an anomaly or the
//                                   peer gone silent (HaNote); the parent says it on stderr and
//                                   records it: the broker's thread prints nothing
//   EXPOSE   [families] [unhealthy] [unready]
//                                   parent -> metrics actor: what GET /metrics serves from now
//                                   on (Prometheus text), and why the process is not healthy or
//                                   not ready ("" when it is)
//
// Over the report socket (each client's PUSH -> the supervisor's one PULL, inproc), a client
// report: the client's index at its supervisor, then one of these commands:
//   [index] RECORDS    [ClientRecord ...]  finished requests, packed
//   [index] DETECTIONS [JSON lines]        detections of answered requests
//   [index] DONE       [JSON]              the client's last counters (ClientTotals): it ended
//   [index] STATS      [JSON]              its counters, when its parent asked STATS (ClientTotals)
// One client's reports arrive in the order it sent them, so its records are all in before its
// DONE (or STATS).
//
// Over the broker's PUB socket:
//   DEMAND   [JSON]                 broker -> controllers: demand per service
//
// Numbers travel as decimal text; a decoder refuses what is not one, or is out of range.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "src/wire/frames.hpp"

namespace zyolo {

enum class PipeCommand {
  Ready, Error, Term, Stats, Records, Done, Detections,  // the life and the reports of an actor
  Crash, Freeze, Retire, Rule,                            // faults and changes a scenario orders
  Demand, Scale,                                          // control traffic (autoscaling)
  Expose,                                                 // the metrics actor's feed
  Ha,                                                     // a broker pair's state changes
};
inline constexpr int kPipeCommandCount = static_cast<int>(PipeCommand::Ha) + 1;
std::string_view pipe_command_name(PipeCommand c);

struct PipeMessage {
  PipeCommand command = PipeCommand::Term;
  Frames args;
};

// Sends a pipe command; with dontwait, returns false instead of blocking when it cannot be sent.
bool send_pipe(zmq::socket_ref pipe, PipeCommand c, Frames args = {},
               zmq::send_flags flags = zmq::send_flags::none);
// Receives one pipe command, waiting. Returns a fault for an unknown command.
Decoded<PipeMessage> recv_pipe(zmq::socket_ref pipe);
// The frames of a pipe command, and back: what send_pipe and recv_pipe do without a socket.
Frames encode_pipe(PipeCommand c, Frames args = {});
Decoded<PipeMessage> decode_pipe(Frames frames);

// --- typed arguments -----------------------------------------------------------------------------
// args_of(x) gives the argument frames of a command carrying x; decode_args<T>(m) reads them back,
// or says what is wrong with them (Fault::MissingFrame, TooManyFrames, BadArguments).
template <class T>
Decoded<T> decode_args(const PipeMessage& m);

// $ERROR: what went wrong, in words.
struct ErrorText {
  std::string text;
};
Frames args_of(const ErrorText& e);
template <> Decoded<ErrorText> decode_args<ErrorText>(const PipeMessage& m);

// EXPOSE: the fleet's metric families as Prometheus text, and the process's health: each reason
// "" when it is healthy (ready), else why not.
struct Exposed {
  std::string families, unhealthy, unready;
};
Frames args_of(const Exposed& e);
template <> Decoded<Exposed> decode_args<Exposed>(const PipeMessage& m);

// HA: what happened to one broker of a pair. A transition goes from one state to another (the
// names of src/wire/binary_star.hpp: PRIMARY, BACKUP, ACTIVE, PASSIVE) for the reason in `text`;
// an anomaly (`text`: "ANOMALY (dual-active): ..." or "MISCONFIGURED (same-role): ...") and a
// lost peer (`text`: "the peer went silent (2.1 s)") leave the state as it is (from == to).
struct HaNote {
  enum class Kind { Transition, Anomaly, PeerLost } kind = Kind::Transition;
  std::string from, to, text;
};
Frames args_of(const HaNote& n);
template <> Decoded<HaNote> decode_args<HaNote>(const PipeMessage& m);
std::string_view ha_note_kind_name(HaNote::Kind k);  // "transition", "anomaly", "peer-lost"
// How the note reads after "zyolo broker: ha: ": "PRIMARY -> ACTIVE (why)", the anomaly's text,
// or "ACTIVE: the peer went silent (2.1 s)".
std::string ha_note_text(const HaNote& n);

// FREEZE: how long the next request hangs.
struct Freeze {
  std::chrono::milliseconds duration{0};
};
Frames args_of(const Freeze& f);
template <> Decoded<Freeze> decode_args<Freeze>(const PipeMessage& m);

// The proxy's forwarding thread tells the proxy thread its CPU clock (pthread_getcpuclockid) in a
// STATS right after $READY, so the proxy can report that thread's CPU time (threads/proxy.cpp).
struct CpuClock {
  long clock = 0;
};
Frames args_of(const CpuClock& c);
template <> Decoded<CpuClock> decode_args<CpuClock>(const PipeMessage& m);

// The nodes a link rule applies to: all, the clients, the workers, or some by id ("w0,c1": a
// letter, c for a client or w for a worker, and a number); or "peer", the state a broker of a pair
// publishes to the other, which the link relays (all covers it too; no client or worker is in it).
struct NodeSet {
  enum class Kind { All, Clients, Workers, Ids, Peer } kind = Kind::All;
  std::vector<std::string> ids;  // Kind::Ids
  bool contains(bool is_client, std::string_view node) const;
};
// Parses "all", "clients", "workers", "peer" or "w0,c1"; nothing for anything else.
std::optional<NodeSet> parse_nodes(std::string_view text);
std::string nodes_text(const NodeSet& nodes);

enum class LinkMode { Partition, Drop, Delay };
std::string_view link_mode_name(LinkMode m);

// RULE: one network fault the link plays.
struct LinkRule {
  NodeSet nodes;
  LinkMode mode = LinkMode::Partition;
  double value = 0;  // Drop: the fraction of messages dropped, (0, 1]; Delay: milliseconds
  std::chrono::milliseconds duration{0};
};
Frames args_of(const LinkRule& r);
template <> Decoded<LinkRule> decode_args<LinkRule>(const PipeMessage& m);

// One finished request, as a client reports it to the supervisor (RECORDS packs them as they are
// in memory: the report socket is inproc and never leaves the process).
struct ClientRecord {
  int64_t end_us;       // steady-clock time the request ended, microseconds
  uint32_t seq;         // the request's number at its client (request id "<client>-<seq>")
  uint32_t latency_us;  // from first send to the answer (or to the deadline)
  uint16_t status;      // the reply's status, or 504 when the deadline passed
  uint16_t retries;     // resends after a timeout
  // Stage times the worker reported (YOLO workers), microseconds: decode, pre, inference, post.
  uint32_t stage_us[4];
};
using ClientRecords = std::vector<ClientRecord>;
Frames args_of(const ClientRecords& records);
template <> Decoded<ClientRecords> decode_args<ClientRecords>(const PipeMessage& m);

// DETECTIONS: one JSON line per answered request.
struct DetectionLines {
  std::string lines;
};
Frames args_of(const DetectionLines& d);
template <> Decoded<DetectionLines> decode_args<DetectionLines>(const PipeMessage& m);

// A whole packed record array in one frame, and back (what RECORDS carries; the fuzz target and
// the tests use these directly).
zmq::message_t pack_records(const ClientRecords& records);
std::optional<ClientRecords> unpack_records(const zmq::message_t& blob);

// --- client reports (the report socket) ----------------------------------------------------------

// One message on the report socket: which client says it, and what.
struct ClientReport {
  uint32_t client = 0;  // the client's index at its supervisor
  PipeMessage message;  // RECORDS, DETECTIONS, DONE or STATS; the arguments as on a pipe
};
// The frames of a client report, and back. decode_report refuses an index that is not a number,
// an unknown command, or a command a client does not report (Fault::UnknownPipeCommand); the
// arguments are decode_args' to check.
Frames encode_report(uint32_t client, PipeCommand c, Frames args = {});
Decoded<ClientReport> decode_report(Frames frames);

}  // namespace zyolo
