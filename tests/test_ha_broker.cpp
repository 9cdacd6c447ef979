// The broker actor as one of a pair (ha.role), over inproc, with the test as its peer: a PUB where
// the test publishes the peer's state, a SUB where it reads the broker's. Passive, it drops client
// requests and counts them; with its peer silent past the expiry, a client's request makes it
// ACTIVE and is served by a worker registered with it all along; both ACTIVE, the backup yields;
// a peer of its own role and malformed state messages are counted. Passive with its peer alive,
// it sends its workers no heartbeat (they move on to the active broker). Each change, anomaly and
// lost peer is an HA note on the broker's pipe, for its parent to say.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <nlohmann/json.hpp>
#include <string>

#include "sockets.hpp"
#include "src/wire/actor.hpp"
#include "src/wire/binary_star.hpp"
#include "src/wire/pipe.hpp"
#include "src/wire/protocol.hpp"
#include "threads/actors.hpp"

using namespace zyolo;
using namespace std::chrono_literals;
using zyolo_test::send;

namespace {

using Clock = std::chrono::steady_clock;

Config pair_config(int broker_heartbeat_ms) {
  Config c = default_config();
  c.run.transport = "inproc";
  c.worker.model = "none";
  c.broker.heartbeat_ms = broker_heartbeat_ms;
  c.ha = {"backup", "inproc://ha-backup", "inproc://ha-primary", 50, 2};  // expiry: 100 ms
  validate(c);
  return c;
}

struct Pair {
  explicit Pair(int broker_heartbeat_ms = default_config().broker.heartbeat_ms)
      : config(pair_config(broker_heartbeat_ms)) {}
  zmq::context_t ctx = make_context();
  Config config;
  zmq::socket_t peer_pub = [this] {
    zmq::socket_t s(ctx, zmq::socket_type::pub);
    s.set(zmq::sockopt::linger, 0);
    s.bind(config.ha.peer);
    return s;
  }();
  zmq::socket_t peer_sub = [this] {
    zmq::socket_t s(ctx, zmq::socket_type::sub);
    s.set(zmq::sockopt::linger, 0);
    s.set(zmq::sockopt::subscribe, "");
    s.connect(config.ha.bind);
    return s;
  }();
  Actor broker{ctx, "broker",
               [c = config](zmq::context_t& x, zmq::socket_ref p) { zyolo::broker(x, p, c); }};
  Actor worker{ctx, "worker", [c = config](zmq::context_t& x, zmq::socket_ref p) {
                 zyolo::worker(x, p, c, "w0");
               }};
  zmq::socket_t client = zyolo_test::dealer(ctx, "client-1", config.frontend());
  std::string broker_state;  // what the broker published last

  std::vector<std::string> notes;  // what the broker told its parent (HA notes), as it reads

  // The broker's STATS; the HA notes before it on the pipe (the broker's thread prints nothing:
  // its parent says them) are kept in `notes`.
  nlohmann::json stats() {
    send_pipe(broker.pipe(), PipeCommand::Stats);
    for (;;) {
      auto m = recv_pipe(broker.pipe());
      REQUIRE(m.ok());
      if (m->command == PipeCommand::Stats) return nlohmann::json::parse(m->args.at(0).to_string_view());
      REQUIRE(m->command == PipeCommand::Ha);
      auto note = decode_args<HaNote>(*m);
      REQUIRE(note.ok());
      notes.push_back(std::string(ha_note_kind_name(note->kind)) + " " + ha_note_text(*note));
    }
  }

  // True when a note so far begins with `text`.
  bool noted(const std::string& text) const {
    return std::any_of(notes.begin(), notes.end(), [&](const std::string& n) { return n.starts_with(text); });
  }

  // For `d`: the peer publishes `state` (if given) every 20 ms; the broker's state messages are
  // read; returns the status of the first client reply to `id` ("" for none).
  std::string pump(std::chrono::milliseconds d, std::optional<HaPeerState> state,
                   const std::string& id = "") {
    const auto until = Clock::now() + d;
    auto publish_at = Clock::now();
    std::string answer;
    while (Clock::now() < until) {
      if (state && Clock::now() >= publish_at) {
        Frames f = encode_ha_state(state->state, state->role);
        REQUIRE(send_frames(peer_pub, f));
        publish_at += 20ms;
      }
      zmq::pollitem_t items[] = {{peer_sub.handle(), 0, ZMQ_POLLIN, 0},
                                 {client.handle(), 0, ZMQ_POLLIN, 0}};
      zmq::poll(items, 2, 10ms);
      if (items[0].revents & ZMQ_POLLIN) {
        auto m = decode_ha_state(*recv_frames(peer_sub));
        REQUIRE(m.ok());
        broker_state = std::string(ha_state_name(m->state));
      }
      if (items[1].revents & ZMQ_POLLIN) {
        auto m = decode_client_reply(*recv_frames(client));
        REQUIRE(m.ok());
        auto r = decode_app_reply(std::move(m->body));
        REQUIRE(r.ok());
        if (r->id == id && answer.empty()) answer = std::to_string(r->status);
      }
    }
    return answer;
  }

  void ask(const std::string& id) {
    send(client, encode_client_request(
                     "yolo", encode_app_request(id, "", zmq::message_t(id.data(), id.size()))));
  }
};

constexpr HaPeerState kPrimaryActive{HaState::Active, HaRole::Primary};

}  // namespace

TEST_CASE(
    "a backup broker: passive while its primary lives, ACTIVE on a client's vote, yields to a "
    "second active") {
  Pair p;
  (void)p.pump(300ms, kPrimaryActive);
  CHECK(p.broker_state == "PASSIVE");
  // Passive: a client's requests are dropped and counted, while the primary lives.
  p.ask("r1");
  CHECK(p.pump(300ms, kPrimaryActive, "r1") == "");
  p.ask("r2");
  CHECK(p.pump(100ms, kPrimaryActive, "r2") == "");
  auto s = p.stats();
  CHECK(s["ha_state"] == "PASSIVE");
  CHECK(s["ha_dropped"] == 2);
  CHECK(s["ha_peer_up"] == true);
  CHECK(s["requests"] == 0);
  CHECK(s["workers"] == 1);  // registered all along
  // Garbage on the state channel is counted, never fatal.
  Frames junk = text_frames({"ZHA01", "x"});
  REQUIRE(send_frames(p.peer_pub, junk));
  (void)p.pump(100ms, kPrimaryActive);
  CHECK(p.stats()["ha_malformed"] == 1);
  // The primary goes silent; time alone changes nothing.
  (void)p.pump(300ms, std::nullopt);
  CHECK(p.broker_state == "PASSIVE");
  s = p.stats();
  CHECK(s["ha_peer_lost"] == 1);
  CHECK(s["ha_peer_up"] == false);
  // A client's request is the vote: ACTIVE, and served by the worker registered with it.
  p.ask("r3");
  CHECK(p.pump(500ms, std::nullopt, "r3") == "200");
  CHECK(p.broker_state == "ACTIVE");
  s = p.stats();
  CHECK(s["ha_state"] == "ACTIVE");
  CHECK(s["ha_transitions"] == 2);  // BACKUP -> PASSIVE -> ACTIVE
  CHECK(s["replies"] == 1);
  INFO(doctest::toString(p.notes.size()), " notes: ", p.notes.empty() ? "" : p.notes.back());
  CHECK(p.noted("transition BACKUP -> PASSIVE (the peer, started as primary, is ACTIVE"));
  CHECK(p.noted("peer-lost PASSIVE: the peer went silent ("));
  CHECK(p.noted("transition PASSIVE -> ACTIVE (peer silent "));
  // The primary comes back restarted: the backup stays ACTIVE and keeps serving.
  (void)p.pump(200ms, HaPeerState{HaState::Primary, HaRole::Primary});
  p.ask("r4");
  CHECK(p.pump(300ms, HaPeerState{HaState::Primary, HaRole::Primary}, "r4") == "200");
  // A second ACTIVE (a split brain healing): the backup yields and serves no more.
  (void)p.pump(200ms, kPrimaryActive);
  CHECK(p.broker_state == "PASSIVE");
  p.ask("r5");
  CHECK(p.pump(300ms, kPrimaryActive, "r5") == "");
  s = p.stats();
  CHECK(s["ha_state"] == "PASSIVE");
  CHECK(s["ha_anomalies"]["dual_active"] == 1);
  CHECK(s["ha_transitions"] == 3);
  CHECK(p.noted("anomaly ANOMALY (dual_active): "));
  CHECK(p.noted("transition ACTIVE -> PASSIVE ("));
  // A peer of its own role: counted every time, nothing moves.
  (void)p.pump(200ms, HaPeerState{HaState::Active, HaRole::Backup});
  s = p.stats();
  CHECK(s["ha_anomalies"]["same_role"].get<long>() >= 3);
  CHECK(s["ha_state"] == "PASSIVE");
}

TEST_CASE(
    "a PASSIVE broker whose peer lives sends its workers no heartbeat, so that they move on; with "
    "the peer silent it heartbeats them again") {
  Pair p(50);  // MDP heartbeats every 50 ms: a worker hearing none for 150 ms moves on
  (void)p.pump(300ms, kPrimaryActive);
  REQUIRE(p.broker_state == "PASSIVE");
  // A worker of the test's own registers and heartbeats; it counts the broker's heartbeats.
  zmq::socket_t worker = zyolo_test::dealer(p.ctx, "raw-worker", p.config.backend());
  send(worker, encode_worker_ready("yolo"));
  long heard = 0;
  auto listen = [&](std::optional<HaPeerState> peer, std::chrono::milliseconds d) {
    for (const auto until = Clock::now() + d; Clock::now() < until;) {
      (void)p.pump(25ms, peer);
      send(worker, encode_worker_command(Command::Heartbeat));
      while (auto f = zyolo_test::recv(worker, 0ms)) {
        auto m = decode_from_broker(std::move(*f));
        REQUIRE(m.ok());
        heard += m->command == Command::Heartbeat;
      }
    }
  };
  listen(kPrimaryActive, 600ms);  // 12 broker heartbeats
  CHECK(heard == 0);
  auto s = p.stats();
  CHECK(s["ha_state"] == "PASSIVE");
  CHECK(s["ha_withheld_heartbeats"].get<long>() >= 8);
  CHECK(s["ha_dropped"] == 0);
  // The primary goes silent (expiry 100 ms): a failover may come, and the workers are kept.
  listen(std::nullopt, 400ms);
  CHECK(heard >= 3);
  CHECK(p.broker_state == "PASSIVE");  // time alone changes nothing
}

TEST_CASE("a lone broker's STATS say no pair") {
  zmq::context_t ctx = make_context();
  Config c = default_config();
  c.run.transport = "inproc";
  validate(c);
  Actor broker{ctx, "broker",
               [c](zmq::context_t& x, zmq::socket_ref p) { zyolo::broker(x, p, c); }};
  send_pipe(broker.pipe(), PipeCommand::Stats);
  auto m = recv_pipe(broker.pipe());
  REQUIRE(m.ok());
  const auto s = nlohmann::json::parse(m->args.at(0).to_string_view());
  CHECK(s["ha_state"] == "");
  CHECK(s["ha_transitions"] == 0);
}
