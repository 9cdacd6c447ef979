// The link: a simulated network between the nodes (clients and workers) and the broker, as an
// actor, for scenarios that partition, drop or delay traffic inside one process.
//
//   clients --DEALER--> [ROUTER client side]          [DEALER per client] --> broker frontend
//                              link actor (this thread)
//   workers --DEALER--> [ROUTER worker side]          [DEALER per worker] --> broker backend
//
// Every connection a node opens gets its own upstream DEALER with the same routing id, so the
// broker sees each node as if it were connected directly (a client's Lazy Pirate reconnection
// keeps its id; the link's ROUTER hands the id over to the new socket, as the broker's does).
// RULE commands from the supervisor make the link drop all traffic of chosen nodes both ways (a
// partition), drop a fraction of it, or hold it back for a delay, for a time. A dropped message
// is gone, as on a real network: nothing is queued and replayed when the partition heals, so
// recovery must come from the protocol (heartbeats, re-registration, retries).
//
// For one of a broker pair (zyolo run --ha: one link per broker), the link also relays the state
// its broker publishes (a SUB on the broker's ha.bind, a PUB the other broker subscribes to): a
// partition of all nodes, or of "peer", drops it, so a broker cut off is silent to its peer too
// (drop and delay leave the state alone: they are for the nodes' traffic).
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <random>

#include "src/wire/actor.hpp"
#include "src/wire/pipe.hpp"
#include "src/wire/protocol.hpp"
#include "src/wire/sockopts.hpp"
#include "src/wire/stats.hpp"
#include "threads/actors.hpp"

namespace zyolo {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

enum class Side { Clients, Workers, Peer };  // Peer: the relayed state of a pair's broker

// A rule the supervisor sent, until it ends.
struct Rule {
  LinkRule rule;
  Clock::time_point until;

  bool matches(Side side, const std::string& node) const {
    if (side == Side::Peer) return rule.nodes.kind == NodeSet::Kind::All || rule.nodes.kind == NodeSet::Kind::Peer;
    return rule.nodes.contains(side == Side::Clients, node);
  }
};

// One connection of a node, and the socket that carries it on to the broker.
struct Connection {
  Side side;
  std::string node;
  zmq::message_t id;  // the routing id on the link's ROUTER
  std::unique_ptr<zmq::socket_t> upstream;
  Clock::time_point heard;  // the last message from the node
};

// A message held back by a delay rule.
struct Held {
  bool upstream;    // towards the broker (else towards the node)
  std::string key;  // the connection
  Frames frames;
};

class Link {
 public:
  Link(zmq::context_t& ctx, zmq::socket_ref pipe, const LinkEndpoints& endpoints, int idle_ms,
       uint64_t seed)
      : ctx_(ctx), pipe_(pipe), endpoints_(endpoints), idle_(idle_ms), random_(seed),
        clients_(ctx, zmq::socket_type::router), workers_(ctx, zmq::socket_type::router) {
    for (auto* s : {&clients_, &workers_}) {
      s->set(zmq::sockopt::linger, 0);
      s->set(zmq::sockopt::router_handover, true);
    }
    clients_.bind(endpoints.client_side);
    workers_.bind(endpoints.worker_side);
    if (!endpoints.state_from.empty()) {
      relay_in_.emplace(ctx, zmq::socket_type::sub);
      relay_out_.emplace(ctx, zmq::socket_type::pub);
      relay_in_->set(zmq::sockopt::linger, 0);
      relay_out_->set(zmq::sockopt::linger, 0);
      relay_in_->set(zmq::sockopt::subscribe, "");
      relay_out_->bind(endpoints.state_to);
      relay_in_->connect(endpoints.state_from);
    }
  }

  ~Link() {
    try {
      clients_.unbind(endpoints_.client_side);
      workers_.unbind(endpoints_.worker_side);
      if (relay_out_) relay_out_->unbind(endpoints_.state_to);
    } catch (const zmq::error_t&) {
    }
  }

  void run() {
    while (!terminated_) {
      std::vector<zmq::pollitem_t> items = {{pipe_.handle(), 0, ZMQ_POLLIN, 0},
                                            {clients_.handle(), 0, ZMQ_POLLIN, 0},
                                            {workers_.handle(), 0, ZMQ_POLLIN, 0}};
      if (relay_in_) items.push_back({relay_in_->handle(), 0, ZMQ_POLLIN, 0});
      const std::size_t first_connection = items.size();
      std::vector<std::string> keys;
      for (auto& [key, c] : connections_) {
        items.push_back({c.upstream->handle(), 0, ZMQ_POLLIN, 0});
        keys.push_back(key);
      }
      auto wake = Clock::now() + idle_ / 4;
      if (!held_.empty()) wake = std::min(wake, held_.begin()->first);
      zmq::poll(items, std::max(milliseconds(0), std::chrono::duration_cast<milliseconds>(
                                                     wake - Clock::now()) + milliseconds(1)));
      if (items[0].revents & ZMQ_POLLIN) on_pipe();
      if (terminated_) break;
      if (items[1].revents & ZMQ_POLLIN) from_node(clients_, Side::Clients);
      if (items[2].revents & ZMQ_POLLIN) from_node(workers_, Side::Workers);
      if (relay_in_ && (items[3].revents & ZMQ_POLLIN)) relay_state();
      for (std::size_t i = 0; i < keys.size(); ++i)
        if (items[first_connection + i].revents & ZMQ_POLLIN) from_broker(keys[i]);
      release_held();
      forget_idle();
      revive_relay();
    }
  }

 private:
  void on_pipe() {
    auto m = recv_pipe(pipe_);
    if (!m || m->command == PipeCommand::Term) {
      terminated_ = true;
    } else if (m->command == PipeCommand::Rule) {
      if (auto rule = decode_args<LinkRule>(m.value()))
        rules_.push_back({std::move(rule.value()), Clock::now() + rule->duration});
    } else if (m->command == PipeCommand::Stats) {
      n_.connections = static_cast<long>(connections_.size());
      send_pipe(pipe_, PipeCommand::Stats, args_of(n_));
    }
  }

  // A message from a node: [routing id][frames...] on the link's ROUTER.
  void from_node(zmq::socket_ref router, Side side) {
    auto frames = recv_frames(router, zmq::recv_flags::dontwait);
    auto m = frames ? split_routed(std::move(*frames)) : std::nullopt;
    if (!m) return;
    const std::string routing_id = to_string(m->peer);
    const std::string key = fmt::format("{}:{}", side == Side::Clients ? 'c' : 'w', routing_id);
    auto it = connections_.find(key);
    if (it == connections_.end()) it = open(key, side, routing_id, m->peer);
    it->second.heard = Clock::now();
    pass(true, key, std::move(m->frames));
  }

  // The state the pair's broker published: on to its peer, unless a rule silences it.
  void relay_state() {
    auto frames = recv_frames(*relay_in_, zmq::recv_flags::dontwait);
    if (!frames) return;
    relay_heard_ = Clock::now();
    const auto now = Clock::now();
    std::erase_if(rules_, [&](const Rule& r) { return r.until <= now; });
    if (std::any_of(rules_.begin(), rules_.end(), [](const Rule& r) {
          return r.matches(Side::Peer, "") && r.rule.mode == LinkMode::Partition;
        })) {
      ++n_.dropped;
      return;
    }
    (void)send_frames(*relay_out_, *frames, zmq::send_flags::dontwait);  // PUB: never blocks
    ++n_.forwarded;
  }

  // A relay that has heard nothing for a quarter of the idle time is connected anew over inproc,
  // where a SUB does not come back by itself to a broker restarted in this process.
  void revive_relay() {
    if (!relay_in_ || Clock::now() - relay_heard_ < idle_ / 4) return;
    reconnect_inproc(*relay_in_, endpoints_.state_from);
    relay_heard_ = Clock::now();
  }

  // A message from the broker for the node behind connection `key`.
  void from_broker(const std::string& key) {
    auto it = connections_.find(key);
    if (it == connections_.end()) return;
    auto frames = recv_frames(*it->second.upstream, zmq::recv_flags::dontwait);
    if (frames) pass(false, key, std::move(*frames));
  }

  std::map<std::string, Connection>::iterator open(const std::string& key, Side side,
                                                   const std::string& routing_id,
                                                   zmq::message_t& id) {
    ++n_.connections_opened;
    Connection c{side, node_of_routing_id(routing_id), {}, connect_upstream(side, id), Clock::now()};
    c.id.copy(id);
    return connections_.emplace(key, std::move(c)).first;
  }

  // A DEALER to the broker that carries the node's routing id. One that starts with a zero byte
  // is libzmq's own (a node that set none) and may not be set by hand: it gets an "L" prefix.
  std::unique_ptr<zmq::socket_t> connect_upstream(Side side, const zmq::message_t& id) {
    auto upstream = std::make_unique<zmq::socket_t>(ctx_, zmq::socket_type::dealer);
    upstream->set(zmq::sockopt::linger, 0);
    const std::string routing_id(id.to_string_view());
    upstream->set(zmq::sockopt::routing_id,
                  routing_id.empty() || routing_id[0] == '\0' ? "L" + routing_id : routing_id);
    upstream->connect(side == Side::Clients ? endpoints_.frontend : endpoints_.backend);
    return upstream;
  }

  // Applies the rules to one message: drops it, holds it back, or forwards it now.
  void pass(bool upstream, const std::string& key, Frames frames) {
    const auto& c = connections_.at(key);
    const auto now = Clock::now();
    std::erase_if(rules_, [&](const Rule& r) { return r.until <= now; });
    double delay_ms = 0;
    for (const auto& r : rules_) {
      if (!r.matches(c.side, c.node)) continue;
      const auto mode = r.rule.mode;
      if (mode == LinkMode::Partition ||
          (mode == LinkMode::Drop && std::uniform_real_distribution<double>(0, 1)(random_) < r.rule.value)) {
        ++n_.dropped;
        return;
      }
      if (mode == LinkMode::Delay) delay_ms = std::max(delay_ms, r.rule.value);
    }
    if (delay_ms > 0) {
      ++n_.delayed;
      const auto at = now + std::chrono::duration_cast<Clock::duration>(
                                std::chrono::duration<double, std::milli>(delay_ms));
      held_.emplace(at, Held{upstream, key, std::move(frames)});
      return;
    }
    forward(upstream, key, std::move(frames));
  }

  void forward(bool upstream, const std::string& key, Frames frames) {
    auto it = connections_.find(key);
    if (it == connections_.end()) return;  // closed while the message was held: lost
    auto& c = it->second;
    bool sent;
    if (upstream) {
      sent = send_frames(*c.upstream, frames, zmq::send_flags::dontwait);
      if (!sent) {  // no peer: over inproc, the broker went away; connect again, as tcp would
        c.upstream = connect_upstream(c.side, c.id);
        sent = send_frames(*c.upstream, frames, zmq::send_flags::dontwait);
      }
    } else {
      zmq::message_t peer;
      peer.copy(c.id);
      frames = join_routed(std::move(peer), std::move(frames));
      auto& router = c.side == Side::Clients ? clients_ : workers_;
      try {
        sent = send_frames(router, frames, zmq::send_flags::dontwait);
      } catch (const zmq::error_t&) {
        sent = false;
      }
    }
    sent ? ++n_.forwarded : ++n_.dropped;  // a full or vanished peer loses it, as a network would
  }

  // Forwards the held messages whose delay is over, in the order they were held.
  void release_held() {
    const auto now = Clock::now();
    while (!held_.empty() && held_.begin()->first <= now) {
      auto node = held_.extract(held_.begin());
      forward(node.mapped().upstream, node.mapped().key, std::move(node.mapped().frames));
    }
  }

  // Closes connections whose node has been silent for the idle time: a worker that registered
  // again on a new socket, or a node that ended, leaves its old connection behind.
  void forget_idle() {
    const auto now = Clock::now();
    n_.connections_closed += static_cast<long>(
        std::erase_if(connections_, [&](const auto& kv) { return now - kv.second.heard > idle_; }));
  }

  zmq::context_t& ctx_;
  zmq::socket_ref pipe_;
  LinkEndpoints endpoints_;
  milliseconds idle_;
  std::mt19937_64 random_;
  zmq::socket_t clients_, workers_;
  std::optional<zmq::socket_t> relay_in_, relay_out_;  // one of a pair: its state, on to the peer
  Clock::time_point relay_heard_ = Clock::now();
  std::map<std::string, Connection> connections_;
  std::vector<Rule> rules_;
  std::multimap<Clock::time_point, Held> held_;
  bool terminated_ = false;
  LinkStats n_;
};

}  // namespace

void link(zmq::context_t& ctx, zmq::socket_ref pipe, const LinkEndpoints& endpoints, int idle_ms,
          uint64_t seed) {
  Link l(ctx, pipe, endpoints, idle_ms, seed);
  signal_ready(pipe);
  l.run();
}

}  // namespace zyolo
