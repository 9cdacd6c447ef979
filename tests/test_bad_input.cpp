// Bad input over real sockets (the reliability issue): a real broker and real echo workers, over
// tcp and inproc, are sent every kind of malformed message from raw DEALERs on the frontend and the
// backend; each must be counted under its name in the broker's STATS, and normal requests must
// still be answered by the workers. A real worker behind a fake broker is sent malformed
// broker -> worker messages and must count them and go on serving.
//
// Payloads that are not images are tests/test_yolo_fleet.cpp's: a YOLO worker answers them 400
// and goes on serving. Not repeated here, so that this suite loads no model.
//
// No sleeps: every wait is a poll on a socket with a generous bound (a broken peer, not pacing),
// and a message that gets no answer is followed on the same connection by one that does, since
// one connection's messages are handled in order.
#include <doctest/doctest.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "src/wire/actor.hpp"
#include "threads/actors.hpp"
#include "src/wire/pipe.hpp"
#include "src/wire/protocol.hpp"
#include "src/wire/stats.hpp"
#include "sockets.hpp"

using namespace zyolo;
using namespace std::chrono_literals;
using zyolo_test::free_port;
using zyolo_test::recv;
using zyolo_test::send;

namespace {

constexpr long kMaxBytes = 4096;   // broker.max_message_bytes in these tests
constexpr int kFlood = 1000;       // frames of the "too many frames" messages, far above any MDP's

Config make_config(const std::string& transport) {
  Config c = default_config();
  c.run.transport = transport;
  c.endpoints.tcp_frontend = "tcp://127.0.0.1:" + std::to_string(free_port());
  c.endpoints.tcp_backend = "tcp://127.0.0.1:" + std::to_string(free_port());
  c.endpoints.tcp_control = "tcp://127.0.0.1:" + std::to_string(free_port());
  c.worker.model = "none";
  c.worker.service_ms = 0;
  c.broker.max_message_bytes = kMaxBytes;
  c.broker.heartbeat_ms = 1000;
  c.broker.liveness = 10;  // nobody expires while a sanitizer slows the test down
  validate(c);
  return c;
}

std::string cmd(Command c) { return std::string(1, static_cast<char>(c)); }

// `head`, then `n` frames of `bytes` bytes each.
Frames with_frames(Frames head, int n, std::size_t bytes = 0) {
  for (int i = 0; i < n; ++i) head.push_back(zmq::message_t(std::string(bytes, 'x')));
  return head;
}

// STATS of an actor, as JSON.
nlohmann::json stats(Actor& actor) {
  send_pipe(actor.pipe(), PipeCommand::Stats);
  auto m = recv_pipe(actor.pipe());
  REQUIRE(m.ok());
  REQUIRE(m->command == PipeCommand::Stats);
  return nlohmann::json::parse(m->args.at(0).to_string_view());
}

// The counter `key` (or `key`.`sub`) of `j`, 0 when the key is absent (counters of zero are left out).
long counter(const nlohmann::json& j, const std::string& key, const std::string& sub = "") {
  if (!j.contains(key)) return 0;
  if (sub.empty()) return j[key].get<long>();
  return j[key].contains(sub) ? j[key][sub].get<long>() : 0;
}

// A broker actor and two echo worker actors on `transport`, and raw DEALERs to poke the broker.
struct Fleet {
  explicit Fleet(const std::string& transport) : config(make_config(transport)) {}
  zmq::context_t ctx = make_context();
  Config config;
  Actor broker{ctx, "broker", [c = config](zmq::context_t& x, zmq::socket_ref p) { zyolo::broker(x, p, c); }};
  Actor w0{ctx, "w0", [c = config](zmq::context_t& x, zmq::socket_ref p) { worker(x, p, c, "w0"); }};
  Actor w1{ctx, "w1", [c = config](zmq::context_t& x, zmq::socket_ref p) { worker(x, p, c, "w1"); }};

  zmq::socket_t peer(const std::string& routing_id, bool to_backend) {
    return zyolo_test::dealer(ctx, routing_id, to_backend ? config.backend() : config.frontend());
  }

  // An mmi.service round trip on `client`: every message it sent before has been handled.
  void sync_frontend(zmq::socket_t& client) {
    send(client, encode_client_request("mmi.service", text_frames({"yolo"})));
    auto f = recv(client);
    REQUIRE(f.has_value());
    REQUIRE(decode_client_reply(std::move(*f)).ok());
  }

  // The next command the broker sends a raw worker, heartbeats skipped.
  std::optional<Command> next_command(zmq::socket_t& w) {
    for (;;) {
      auto f = recv(w);
      if (!f) return std::nullopt;
      auto m = decode_from_broker(std::move(*f));
      REQUIRE(m.ok());
      if (m->command != Command::Heartbeat) return m->command;
    }
  }
};

// A request with id `id` (and `id` as the payload), answered by an echo worker with 200.
void check_served(zmq::socket_t& client, const std::string& id) {
  send(client, encode_client_request("yolo", encode_app_request(id, "", zmq::message_t(id))));
  auto frames = recv(client);
  REQUIRE(frames.has_value());
  auto m = decode_client_reply(std::move(*frames));
  REQUIRE(m.ok());
  auto reply = decode_app_reply(std::move(m->body));
  REQUIRE(reply.ok());
  CHECK(reply->id == id);
  CHECK(reply->status == 200);
  CHECK(reply->payload.to_string_view() == id);
}

void broker_survives_bad_input(const std::string& transport) {
  Fleet f(transport);
  const bool tcp = transport == "tcp";

  // --- the frontend: a raw client speaking garbage ---------------------------------------------
  auto bad = f.peer("bad-client", false);
  send(bad, text_frames({""}));                                       // empty message
  send(bad, text_frames({"", "MDPC02", "yolo", "x"}));                // wrong protocol header
  send(bad, text_frames({"", "MDPW01", "yolo", "x"}));                // the worker's header
  send(bad, with_frames(text_frames({"", "MDPC01", "yolo"}), kFlood));  // too many frames
  // More bytes than max_message_bytes in all, each frame under it (so over tcp libzmq's per-frame
  // ZMQ_MAXMSGSIZE lets it through and the broker's own check must catch it).
  send(bad, with_frames(text_frames({"", "MDPC01", "yolo"}), 3, kMaxBytes / 2));
  if (!tcp)  // one frame over the limit: inproc has no ZMQ_MAXMSGSIZE, the broker counts it
    send(bad, with_frames(text_frames({"", "MDPC01", "yolo"}), 1, 2 * kMaxBytes));
  f.sync_frontend(bad);
  auto s = stats(f.broker);
  CHECK(counter(s, "faults", "empty message") == 1);
  CHECK(counter(s, "faults", "wrong protocol header") == 2);
  CHECK(counter(s, "faults", "too many frames") == 1);
  CHECK(counter(s, "faults", "oversized message") == (tcp ? 1 : 2));
  CHECK(counter(s, "malformed") == (tcp ? 5 : 6));
  CHECK(counter(s, "requests") == 0);

  if (tcp) {
    // One frame over the limit over tcp: libzmq drops that connection before the broker sees the
    // message (so it is not counted); the broker itself goes on.
    auto huge = f.peer("huge-client", false);
    send(huge, with_frames(text_frames({"", "MDPC01", "yolo"}), 1, 2 * kMaxBytes));
    auto other = f.peer("other-client", false);
    f.sync_frontend(other);
  }

  // --- the backend: raw workers speaking garbage -------------------------------------------------
  auto noisy = f.peer("noisy", true);  // never registers
  send(noisy, text_frames({""}));                                               // empty message
  send(noisy, text_frames({"", "MDPW09", cmd(Command::Ready), "yolo"}));        // wrong header
  send(noisy, text_frames({"", "MDPC01", cmd(Command::Ready), "yolo"}));        // the client's
  send(noisy, text_frames({"", "MDPW01", "\x09"}));                             // unknown command
  send(noisy, text_frames({"", "MDPW01", cmd(Command::Request), "c", "", "x"}));  // the broker's
  send(noisy, with_frames(encode_worker_command(Command::Heartbeat), kFlood));  // too many frames
  send(noisy, with_frames(encode_worker_reply(zmq::message_t(std::string("c")), {}), 3,
                          kMaxBytes / 2));                                       // oversized
  if (!tcp) send(noisy, with_frames(encode_worker_ready("yolo"), 1, 2 * kMaxBytes));  // oversized
  send(noisy, encode_worker_command(Command::Heartbeat));  // HEARTBEAT from an unknown worker
  CHECK(f.next_command(noisy) == Command::Disconnect);
  send(noisy, encode_worker_reply(zmq::message_t(std::string("c")),
                                  encode_app_reply("c-0", 200, "{}")));  // REPLY from an unknown
  CHECK(f.next_command(noisy) == Command::Disconnect);

  auto twice = f.peer("twice", true);
  send(twice, encode_worker_ready("yolo"));
  send(twice, encode_worker_reply(zmq::message_t(std::string("c")),
                                  encode_app_reply("c-0", 200, "{}")));  // REPLY not asked for
  send(twice, encode_worker_ready("yolo"));                             // READY twice
  CHECK(f.next_command(twice) == Command::Disconnect);

  s = stats(f.broker);
  CAPTURE(s.dump());
  CHECK(counter(s, "faults", "empty message") == 2);
  CHECK(counter(s, "faults", "wrong protocol header") == 4);
  CHECK(counter(s, "faults", "unknown command") == 2);
  CHECK(counter(s, "faults", "too many frames") == 2);
  CHECK(counter(s, "faults", "oversized message") == (tcp ? 2 : 4));
  CHECK(counter(s, "malformed") == (tcp ? 12 : 14));
  CHECK(counter(s, "unknown_worker") == 2);
  CHECK(counter(s, "unknown_worker_commands", "HEARTBEAT") == 1);
  CHECK(counter(s, "unknown_worker_commands", "REPLY") == 1);
  CHECK(counter(s, "protocol_errors") == 2);
  CHECK(counter(s, "protocol_errors_by_kind", "READY twice") == 1);
  CHECK(counter(s, "protocol_errors_by_kind", "REPLY not asked for") == 1);
  CHECK(counter(s, "replies") == 0);

  // --- and it still serves: normal requests, answered by the real workers -----------------------
  auto client = f.peer("good-client", false);
  for (int i = 0; i < 6; ++i) check_served(client, "good-" + std::to_string(i));
  s = stats(f.broker);
  CHECK(counter(s, "requests") == 6);
  CHECK(counter(s, "replies") == 6);
  // The garbage never reached a worker.
  long served = 0;
  for (auto* w : {&f.w0, &f.w1}) {
    auto ws = stats(*w);
    CHECK(counter(ws, "malformed") == 0);
    CHECK(counter(ws, "reconnects") == 0);
    served += counter(ws, "served");
  }
  CHECK(served == 6);
}

// A real worker behind a fake broker (a raw ROUTER bound where the broker would be).
void worker_survives_bad_input(const std::string& transport) {
  zmq::context_t ctx = make_context();
  const Config config = make_config(transport);
  zmq::socket_t broker(ctx, zmq::socket_type::router);
  broker.set(zmq::sockopt::linger, 0);
  broker.bind(config.backend());
  Actor w(ctx, "w", [c = config](zmq::context_t& x, zmq::socket_ref p) { worker(x, p, c, "w"); });

  auto ready = recv(broker);
  REQUIRE(ready.has_value());
  auto m = decode_from_worker(std::move(*ready));
  REQUIRE(m.ok());
  REQUIRE(m->command == Command::Ready);
  const zmq::message_t peer = std::move(m->peer);
  auto to_worker = [&](Frames f) {  // [peer] + f
    Frames out;
    out.emplace_back(peer.data(), peer.size());
    for (auto& x : f) out.push_back(std::move(x));
    send(broker, std::move(out));
  };

  to_worker(text_frames({""}));                                          // empty message
  to_worker(text_frames({"", "MDPW09", cmd(Command::Heartbeat)}));       // wrong header
  to_worker(text_frames({"", "MDPW01", "\x09"}));                        // unknown command
  to_worker(encode_worker_ready("yolo"));                                // a worker's command
  to_worker(with_frames(encode_worker_command(Command::Heartbeat), kFlood));  // too many frames
  // A REQUEST whose body is not a zyolo request: answered 400, counted as a bad request.
  to_worker(text_frames({"", "MDPW01", cmd(Command::Request), "client", "", "only-one-frame"}));
  // A valid REQUEST: answered 200 with the payload echoed.
  Frames req = encode_broker_request(zmq::message_t(std::string("P")),
                                     zmq::message_t(std::string("client")),
                                     encode_app_request("c-1", "", zmq::message_t(std::string("img"))));
  req.erase(req.begin());
  to_worker(std::move(req));

  std::vector<AppReply> replies;
  while (replies.size() < 2) {
    auto f = recv(broker);
    REQUIRE(f.has_value());
    auto r = decode_from_worker(std::move(*f));
    REQUIRE(r.ok());
    if (r->command == Command::Heartbeat) continue;
    REQUIRE(r->command == Command::Reply);
    CHECK(to_string(r->client) == "client");
    auto app = decode_app_reply(std::move(r->body));
    REQUIRE(app.ok());
    replies.push_back(std::move(app.value()));
  }
  CHECK(replies[0].status == 400);
  CHECK(replies[1].id == "c-1");
  CHECK(replies[1].status == 200);
  CHECK(replies[1].payload.to_string_view() == "img");

  auto s = stats(w);
  CAPTURE(s.dump());
  CHECK(counter(s, "malformed") == 5);
  CHECK(counter(s, "bad_requests") == 1);
  CHECK(counter(s, "served") == 1);
  CHECK(counter(s, "reconnects") == 0);
}

}  // namespace

TEST_CASE("the broker counts every malformed input over tcp, and still serves") {
  broker_survives_bad_input("tcp");
}

TEST_CASE("the broker counts every malformed input over inproc, and still serves") {
  broker_survives_bad_input("inproc");
}

TEST_CASE("a worker counts malformed broker messages over tcp, and still serves") {
  worker_survives_bad_input("tcp");
}

TEST_CASE("a worker counts malformed broker messages over inproc, and still serves") {
  worker_survives_bad_input("inproc");
}
