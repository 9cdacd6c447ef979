// The broker over real sockets: opened with protocol violations (each counted, answered or
// dropped), then checked to still serve; mmi.service; LRU; the bounded queue; expiry and re-queue.
#include <doctest/doctest.h>

#include <fmt/format.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <thread>
#include <zmq_addon.hpp>

#include "src/wire/actor.hpp"
#include "threads/actors.hpp"
#include "src/wire/pipe.hpp"
#include "src/wire/protocol.hpp"
#include "src/wire/stats.hpp"
#include "sockets.hpp"

using namespace zyolo;
using namespace std::chrono_literals;
using zyolo_test::recv;
using zyolo_test::send;

namespace {

// A broker actor on inproc endpoints, and raw peers to poke it with. Raw workers heartbeat only
// when they read, so tests that are not about expiry keep the default 1 s interval.
struct Bench {
  explicit Bench(int heartbeat_ms = 1000, int hwm = 1000, int credit = 1)
      : heartbeat_ms_(heartbeat_ms), hwm_(hwm), credit_(credit) {}
  int heartbeat_ms_, hwm_, credit_;
  zmq::context_t ctx = make_context();
  Config config = [this] {
    Config c = default_config();
    c.run.transport = "inproc";
    c.worker.model = "none";
    c.broker.heartbeat_ms = heartbeat_ms_;
    c.broker.liveness = 3;
    c.broker.max_queue = 2;
    c.sockets.sndhwm = c.sockets.rcvhwm = hwm_;
    c.broker.worker_credit = credit_;
    validate(c);
    return c;
  }();
  Actor broker{ctx, "broker", [c = config](zmq::context_t& x, zmq::socket_ref p) { zyolo::broker(x, p, c); }};

  zmq::socket_t peer(const std::string& routing_id, bool to_backend) {
    return zyolo_test::dealer(ctx, routing_id, to_backend ? config.backend() : config.frontend());
  }

  nlohmann::json stats() {
    send_pipe(broker.pipe(), PipeCommand::Stats);
    auto m = recv_pipe(broker.pipe());
    REQUIRE(m.ok());
    REQUIRE(m->command == PipeCommand::Stats);
    return nlohmann::json::parse(m->args.at(0).to_string_view());
  }
};

// The next worker-protocol message that is not a HEARTBEAT; heartbeats are answered, as a live
// worker does.
std::optional<WorkerMessage> recv_command(zmq::socket_t& worker) {
  for (;;) {
    auto f = recv(worker);
    if (!f) return std::nullopt;
    auto m = decode_from_broker(std::move(*f));
    REQUIRE(m.ok());
    if (m->command != Command::Heartbeat) return std::move(m.value());
    send(worker, encode_worker_command(Command::Heartbeat));
  }
}

// Asks mmi.service about `service`; returns "200", "404" or "501".
std::string mmi(zmq::socket_t& client, const std::string& query, const std::string& service) {
  send(client, encode_client_request(query, text_frames({service})));
  auto f = recv(client);
  REQUIRE(f.has_value());
  auto m = decode_client_reply(std::move(*f));
  REQUIRE(m.ok());
  CHECK(m->service == query);
  return to_string(m->body.at(0));
}

// Asks mmi.service until it answers `code` (within 10 s); true when it did. A worker's READY or
// DISCONNECT and a client's question travel on different sockets, so the broker may read the
// question first: this waits for the worker's message to be read, as a client would.
bool mmi_until(zmq::socket_t& client, const std::string& service, const std::string& code) {
  const auto until = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < until)
    if (mmi(client, "mmi.service", service) == code) return true;
  return false;
}

Frames request(const std::string& id, const std::string& service = "yolo") {
  return encode_client_request(service, encode_app_request(id, "", zmq::message_t(id.data(), id.size())));
}

std::string cmd(Command c) { return std::string(1, static_cast<char>(c)); }

}  // namespace

TEST_CASE("a broker opened with client-side protocol violations drops and counts them, then serves") {
  Bench b;
  auto client = b.peer("client-1", false);
  send(client, text_frames({""}));                              // an empty message
  send(client, text_frames({"hello"}));                         // no delimiter
  send(client, text_frames({"", "MDPC02", "yolo", "x"}));       // wrong protocol version
  send(client, text_frames({"", "MDPW01", "yolo", "x"}));       // the worker protocol, on the wrong side
  send(client, text_frames({"", "MDPC01"}));                    // no service
  send(client, text_frames({"", "MDPC01", ""}));                // empty service
  Frames many = text_frames({"", "MDPC01", "yolo"});
  for (std::size_t i = 0; i < kMaxBodyFrames + 1; ++i) many.emplace_back();
  send(client, std::move(many));                                // too many frames
  // Messages on one connection are handled in order: this answer comes after all of the above.
  CHECK(mmi(client, "mmi.service", "yolo") == "404");
  auto s = b.stats();
  CHECK(s["malformed"] == 7);
  CHECK(s["faults"]["empty message"] == 1);
  CHECK(s["faults"]["wrong protocol header"] == 2);
  CHECK(s["faults"]["too many frames"] == 1);
  CHECK(s["requests"] == 0);

  // Still serving: a real worker actor registers and a real request is answered.
  Actor w(b.ctx, "worker", [c = b.config](zmq::context_t& x, zmq::socket_ref p) { worker(x, p, c, "w0"); });
  send(client, request("c1-1"));
  auto f = recv(client);
  REQUIRE(f.has_value());
  auto m = decode_client_reply(std::move(*f));
  REQUIRE(m.ok());
  auto reply = decode_app_reply(std::move(m->body));
  REQUIRE(reply.ok());
  CHECK(reply->id == "c1-1");
  CHECK(reply->status == 200);
  CHECK(reply->payload.to_string_view() == "c1-1");
}

TEST_CASE("a broker opened with worker-side protocol violations disconnects or drops, then serves") {
  Bench b;
  auto stranger = b.peer("stranger", true);
  send(stranger, encode_worker_command(Command::Heartbeat));  // HEARTBEAT before READY
  auto m = recv_command(stranger);
  REQUIRE(m.has_value());
  CHECK(m->command == Command::Disconnect);
  send(stranger, encode_worker_reply(zmq::message_t(std::string("nobody")), text_frames({"x"})));
  m = recv_command(stranger);  // REPLY from an unknown worker
  REQUIRE(m.has_value());
  CHECK(m->command == Command::Disconnect);

  auto twice = b.peer("twice", true);
  send(twice, encode_worker_ready("yolo"));
  send(twice, encode_worker_ready("yolo"));  // READY twice: a protocol error
  m = recv_command(twice);
  REQUIRE(m.has_value());
  CHECK(m->command == Command::Disconnect);

  auto noisy = b.peer("noisy", true);
  send(noisy, text_frames({"", "MDPW01", "\x09"}));                     // unknown command
  send(noisy, text_frames({"", "MDPW01", cmd(Command::Request), "c", "", "x"}));  // REQUEST is the broker's
  send(noisy, text_frames({"", "MDPW09", cmd(Command::Ready), "yolo"}));  // wrong header
  send(noisy, text_frames({"", "MDPW01", cmd(Command::Ready), "mmi.x"}));  // reserved service
  m = recv_command(noisy);
  REQUIRE(m.has_value());
  CHECK(m->command == Command::Disconnect);

  auto client = b.peer("client", false);
  CHECK(mmi(client, "mmi.service", "yolo") == "404");  // nobody registered for good
  auto s = b.stats();
  CHECK(s["unknown_worker"] == 2);
  CHECK(s["protocol_errors"] == 2);
  CHECK(s["protocol_errors_by_kind"]["READY twice"] == 1);
  CHECK(s["protocol_errors_by_kind"]["READY for mmi.*"] == 1);
  CHECK(s["unknown_worker_commands"]["HEARTBEAT"] == 1);
  CHECK(s["unknown_worker_commands"]["REPLY"] == 1);
  CHECK(s["faults"]["unknown command"] == 2);
  CHECK(s["faults"]["wrong protocol header"] == 1);
  CHECK(s["workers"] == 0);

  // A well-behaved raw worker now registers and serves.
  auto good = b.peer("good", true);
  send(good, encode_worker_ready("yolo"));
  CHECK(mmi_until(client, "yolo", "200"));
  send(client, request("c-1"));
  m = recv_command(good);
  REQUIRE(m.has_value());
  REQUIRE(m->command == Command::Request);
  send(good, encode_worker_reply(std::move(m->client), encode_app_reply("c-1", 200, "{}")));
  auto f = recv(client);
  REQUIRE(f.has_value());
  auto reply = decode_client_reply(std::move(*f));
  REQUIRE(reply.ok());
  CHECK(decode_app_reply(std::move(reply->body))->id == "c-1");
}

TEST_CASE("mmi: 200 for a service with workers, 404 without, 501 for other mmi.* names") {
  Bench b;
  auto client = b.peer("c", false);
  CHECK(mmi(client, "mmi.service", "yolo") == "404");
  auto w = b.peer("w", true);
  send(w, encode_worker_ready("yolo"));
  CHECK(mmi_until(client, "yolo", "200"));
  CHECK(mmi(client, "mmi.service", "other") == "404");
  CHECK(mmi(client, "mmi.echo", "yolo") == "501");
  send(w, encode_worker_command(Command::Disconnect));
  CHECK(mmi_until(client, "yolo", "404"));
}

TEST_CASE("idle workers are served least recently used first") {
  Bench b;
  auto w1 = b.peer("w1", true), w2 = b.peer("w2", true);
  auto client = b.peer("c", false);
  send(w1, encode_worker_ready("yolo"));
  CHECK(mmi_until(client, "yolo", "200"));  // w1 is registered before w2
  send(w2, encode_worker_ready("yolo"));
  const auto until = std::chrono::steady_clock::now() + 10s;
  while (b.stats()["workers"] != 2) REQUIRE(std::chrono::steady_clock::now() < until);
  for (int round = 0; round < 3; ++round) {
    for (auto* w : {&w1, &w2}) {
      const std::string id = fmt::format("c-{}", round);
      send(client, request(id));
      auto m = recv_command(*w);  // the one idle longest gets it
      REQUIRE(m.has_value());
      REQUIRE(m->command == Command::Request);
      send(*w, encode_worker_reply(std::move(m->client), encode_app_reply(id, 200, "{}")));
      REQUIRE(recv(client).has_value());
    }
  }
}

TEST_CASE("a full queue answers 503 at once") {
  Bench b;  // max_queue 2, no workers
  auto client = b.peer("c", false);
  send(client, request("c-1"));
  send(client, request("c-2"));
  send(client, request("c-3"));
  auto f = recv(client);
  REQUIRE(f.has_value());
  auto m = decode_client_reply(std::move(*f));
  REQUIRE(m.ok());
  auto reply = decode_app_reply(std::move(m->body));
  REQUIRE(reply.ok());
  CHECK(reply->id == "c-3");
  CHECK(reply->status == 503);
  auto s = b.stats();
  CHECK(s["queue"] == 2);
  CHECK(s["rejected_busy"] == 1);
}

TEST_CASE("a silent worker expires and the request it held is re-queued to another") {
  Bench b(100);  // heartbeat 100 ms, liveness 3: expiry after 300 ms of silence
  auto silent = b.peer("silent", true);
  auto client = b.peer("c", false);
  send(silent, encode_worker_ready("yolo"));
  CHECK(mmi_until(client, "yolo", "200"));
  send(client, request("c-1"));
  auto m = recv_command(silent);
  REQUIRE(m.has_value());
  REQUIRE(m->command == Command::Request);
  // It never answers and never heartbeats. A second worker joins; the request must reach it
  // once the first is expired (about 300 ms), and the answer must reach the client.
  auto helper = b.peer("helper", true);
  send(helper, encode_worker_ready("yolo"));
  m = recv_command(helper);
  REQUIRE(m.has_value());
  REQUIRE(m->command == Command::Request);
  CHECK(decode_app_request(std::move(m->body))->id == "c-1");
  send(helper, encode_worker_reply(std::move(m->client), encode_app_reply("c-1", 200, "{}")));
  REQUIRE(recv(client).has_value());
  auto s = b.stats();
  CHECK(s["expired"] == 1);
  CHECK(s["requeued"] == 1);
  // The expired worker's late reply is from an unknown worker now: DISCONNECT, not delivered.
  send(silent, encode_worker_reply(zmq::message_t(std::string("c")), encode_app_reply("c-1", 200, "{}")));
  bool told = false;
  while (auto f = recv(silent)) {
    auto d = decode_from_broker(std::move(*f));
    if (d.ok() && d->command == Command::Disconnect) {
      told = true;
      break;
    }
  }
  CHECK(told);
  CHECK_FALSE(recv(client, 200ms).has_value());  // and the client saw it only once
}

// A worker that has not read for a while has a full queue (EAGAIN): it is slow, not gone. The
// broker keeps it and the request, and hands the request over once the worker reads again.
TEST_CASE("a worker whose queue is full stays registered, and its request waits for it") {
  Bench b(100, 2);  // heartbeat 100 ms, queues of 2 messages
  zmq::socket_t worker(b.ctx, zmq::socket_type::dealer);
  worker.set(zmq::sockopt::linger, 0);
  worker.set(zmq::sockopt::rcvhwm, 1);
  worker.set(zmq::sockopt::routing_id, "deaf");
  worker.connect(b.config.backend());
  auto client = b.peer("c", false);
  send(worker, encode_worker_ready("yolo"));
  // The worker heartbeats but does not read: the broker's heartbeats fill its queue, and the
  // first one refused is counted as unroutable.
  auto wait_for = [&](const char* key) {
    const auto until = std::chrono::steady_clock::now() + 10s;
    for (;;) {
      send(worker, encode_worker_command(Command::Heartbeat));  // alive: never expired
      auto s = b.stats();
      if (s[key].get<long>() >= 1) return s;
      REQUIRE(std::chrono::steady_clock::now() < until);
      std::this_thread::sleep_for(20ms);  // the worker's own heartbeat pace; the loop waits on STATS
    }
  };
  (void)wait_for("unroutable");
  send(client, request("c-1"));
  auto s = wait_for("full_pipes");
  CHECK(s["workers"] == 1);  // kept: a full queue is not a vanished peer
  CHECK(s["queue"] == 1);    // the request waits, first in line
  CHECK(s["expired"] == 0);
  // The worker reads what piled up, says it is alive, and gets the request.
  while (zyolo::recv_frames(worker, zmq::recv_flags::dontwait)) {
  }
  send(worker, encode_worker_command(Command::Heartbeat));
  auto m = recv_command(worker);
  REQUIRE(m.has_value());
  REQUIRE(m->command == Command::Request);
  CHECK(decode_app_request(std::move(m->body))->id == "c-1");
  send(worker, encode_worker_reply(std::move(m->client), encode_app_reply("c-1", 200, "{}")));
  auto f = recv(client);
  REQUIRE(f.has_value());
  auto reply = decode_client_reply(std::move(*f));
  REQUIRE(reply.ok());
  CHECK(decode_app_reply(std::move(reply->body))->id == "c-1");
  s = b.stats();
  CHECK(s["replies"] == 1);
  CHECK(s["workers"] == 1);
}

// Worker credit 2: a worker holds two requests at once and no more; when it dies holding two,
// each is re-queued once and served by another, and the client gets each answer once.
TEST_CASE("credit 2: a worker holds at most 2 requests; a worker lost with 2 has both re-queued once") {
  Bench b(100, 1000, 2);  // heartbeat 100 ms, liveness 3: expiry after 300 ms of silence
  auto silent = b.peer("silent", true);
  auto client = b.peer("c", false);
  send(silent, encode_worker_ready("yolo"));
  CHECK(mmi_until(client, "yolo", "200"));
  for (const char* id : {"c-1", "c-2", "c-3"}) send(client, request(id));
  std::set<std::string> held;
  for (int i = 0; i < 2; ++i) {
    auto m = recv_command(silent);
    REQUIRE(m.has_value());
    REQUIRE(m->command == Command::Request);
    held.insert(decode_app_request(std::move(m->body))->id);
  }
  CHECK(held == std::set<std::string>{"c-1", "c-2"});  // in order, two of them
  // The third waits for credit, once the broker has read it (it may not have yet when the
  // second reached the worker): the queue is read until it holds it, for well under the silent
  // worker's expiry.
  auto s = b.stats();
  for (const auto until = std::chrono::steady_clock::now() + 150ms;
       s["queue"] != 1 && std::chrono::steady_clock::now() < until;)
    s = b.stats();
  CHECK(s["held"] == 2);
  CHECK(s["queue"] == 1);
  CHECK(s["most_held"] == 2);
  // It never answers and never heartbeats again. Another worker serves all three: the one that
  // waited, and both of the silent one's once it is expired.
  auto helper = b.peer("helper", true);
  send(helper, encode_worker_ready("yolo"));
  std::multiset<std::string> served, answered;
  while (answered.size() < 3) {
    auto m = recv_command(helper);
    REQUIRE(m.has_value());
    REQUIRE(m->command == Command::Request);
    const std::string id = decode_app_request(std::move(m->body))->id;
    served.insert(id);
    send(helper, encode_worker_reply(std::move(m->client), encode_app_reply(id, 200, "{}")));
    auto f = recv(client);
    REQUIRE(f.has_value());
    auto reply = decode_client_reply(std::move(*f));
    REQUIRE(reply.ok());
    answered.insert(decode_app_reply(std::move(reply->body))->id);
  }
  CHECK(served == std::multiset<std::string>{"c-1", "c-2", "c-3"});
  CHECK(answered == served);
  s = b.stats();
  CHECK(s["expired"] == 1);
  CHECK(s["requeued"] == 2);  // each of the two, once
  CHECK(s["abandoned"] == 0);
  CHECK(s["replies"] == 3);
  CHECK(s["most_held"] == 2);  // never more than the credit
  CHECK_FALSE(recv(client, 200ms).has_value());  // nothing twice
}

TEST_CASE("a worker leaving with DISCONNECT: a request that crossed it is served, none re-queued") {
  Bench b;
  auto leaving = b.peer("leaving", true), stays = b.peer("stays", true);
  auto client = b.peer("c", false);
  send(leaving, encode_worker_ready("yolo"));
  CHECK(mmi_until(client, "yolo", "200"));  // registered first: served first (LRU)
  send(client, request("c-1"));
  auto m = recv_command(leaving);
  REQUIRE(m.has_value());
  REQUIRE(m->command == Command::Request);
  // The worker said DISCONNECT before it read the request: the two crossed on the wire. It still
  // serves it, as zyolo's worker does while it leaves.
  send(leaving, encode_worker_command(Command::Disconnect));
  send(stays, encode_worker_ready("yolo"));
  send(client, request("c-2"));
  auto other = recv_command(stays);  // nothing more goes to the leaving worker
  REQUIRE(other.has_value());
  REQUIRE(other->command == Command::Request);
  CHECK(decode_app_request(std::move(other->body))->id == "c-2");
  send(stays, encode_worker_reply(std::move(other->client), encode_app_reply("c-2", 200, "{}")));
  send(leaving, encode_worker_reply(std::move(m->client), encode_app_reply("c-1", 200, "{}")));
  std::set<std::string> answered;
  for (int i = 0; i < 2; ++i) {
    auto f = recv(client);
    REQUIRE(f.has_value());
    auto reply = decode_client_reply(std::move(*f));
    REQUIRE(reply.ok());
    answered.insert(decode_app_reply(std::move(reply->body))->id);
  }
  CHECK(answered == std::set<std::string>{"c-1", "c-2"});
  // Only now that it holds nothing is it let go.
  auto bye = recv_command(leaving);
  REQUIRE(bye.has_value());
  CHECK(bye->command == Command::Disconnect);
  auto s = b.stats();
  CHECK(s["disconnects"] == 1);
  CHECK(s["crossed_disconnect"] == 1);
  CHECK(s["requeued"] == 0);
  CHECK(s["requeued_after_disconnect"] == 0);
  CHECK(s["workers"] == 1);
  // An idle worker that says DISCONNECT is let go at once.
  send(stays, encode_worker_command(Command::Disconnect));
  bye = recv_command(stays);
  REQUIRE(bye.has_value());
  CHECK(bye->command == Command::Disconnect);
  CHECK(b.stats()["workers"] == 0);
}

TEST_CASE("the broker publishes each service's demand on its control socket") {
  Bench b;
  zmq::socket_t sub(b.ctx, zmq::socket_type::sub);
  sub.set(zmq::sockopt::linger, 0);
  sub.set(zmq::sockopt::subscribe, "DEMAND");
  sub.connect(b.config.control());
  auto w = b.peer("w", true);
  auto c1 = b.peer("c1", false), c2 = b.peer("c2", false);
  send(w, encode_worker_ready("yolo"));
  send(c1, request("c1-1"));
  send(c2, request("c2-1"));
  auto m = recv_command(w);  // one held by the worker, one queued: two in the system
  REQUIRE(m.has_value());
  // Wait for an interval spent wholly with both requests in the system.
  nlohmann::json yolo;
  for (int i = 0; i < 100; ++i) {
    auto frames = recv(sub);  // recv_frames: tells TSan of the hand-off through libzmq
    REQUIRE(frames.has_value());
    auto d = decode_pipe(std::move(*frames));
    REQUIRE(d.ok());
    REQUIRE(d->command == PipeCommand::Demand);
    auto j = nlohmann::json::parse(d->args.at(0).to_string_view());
    if (!j["services"].contains("yolo")) continue;
    yolo = j["services"]["yolo"];
    if (yolo["demand"].get<double>() > 1.999) break;
  }
  INFO(yolo.dump());
  CHECK(yolo["demand"].get<double>() == doctest::Approx(2.0).epsilon(0.001));
  CHECK(yolo["outstanding"] == 2);
  CHECK(yolo["queue"] == 1);
  CHECK(yolo["in_flight"] == 1);
  CHECK(yolo["clients"] == 2);
  CHECK(yolo["workers"] == 1);
}

// A worker given two backends (a broker pair's) starts with the first; when it goes silent for
// liveness x heartbeat the worker registers with the second at once, not after its back-off (here
// 2 s), and serves there; it does not go back to the first while the second answers. When the
// second goes silent it goes back to the first at once too; only after a whole round of the list
// heard from no broker does the back-off pace it.
TEST_CASE("a worker with two backends moves to the second when the first goes silent, and serves there") {
  zmq::context_t ctx = make_context();
  Config c = default_config();
  c.run.transport = "tcp";
  const std::string a = "tcp://127.0.0.1:" + std::to_string(zyolo_test::free_port());
  const std::string b = "tcp://127.0.0.1:" + std::to_string(zyolo_test::free_port());
  c.endpoints.tcp_backend = a + "," + b;
  c.worker.model = "none";
  c.worker.service_ms = 0;
  c.worker.reconnect_initial_ms = 2000;
  c.broker.heartbeat_ms = 100;
  c.broker.liveness = 3;
  validate(c);
  auto router = [&](const std::string& endpoint) {
    zmq::socket_t s(ctx, zmq::socket_type::router);
    s.set(zmq::sockopt::linger, 0);
    s.bind(endpoint);
    return s;
  };
  zmq::socket_t ra = router(a), rb = router(b);
  Actor w(ctx, "w", [c](zmq::context_t& x, zmq::socket_ref p) { worker(x, p, c, "w"); });
  auto command_of = [](std::optional<Frames> f) {
    REQUIRE(f.has_value());
    auto m = decode_from_worker(std::move(*f));
    REQUIRE(m.ok());
    return std::move(m.value());
  };
  CHECK(command_of(recv(ra)).command == Command::Ready);  // the first: then silence
  const auto registered = std::chrono::steady_clock::now();
  auto ready = command_of(recv(rb, 5s));
  const double after = std::chrono::duration<double>(std::chrono::steady_clock::now() - registered).count();
  CHECK(ready.command == Command::Ready);
  CHECK(after >= 0.25);  // not before the silence (300 ms; the clocks differ by a little)
  CHECK(after < 1.5);    // ... and without the 2 s back-off
  Frames body = encode_app_request("r1", "", zmq::message_t(std::string("hello")));
  send(rb, encode_broker_request(ready.peer, zmq::message_t(std::string("client-1")), std::move(body)));
  for (;;) {  // heartbeats may come first: answered, as a live broker does
    auto m = command_of(recv(rb));
    if (m.command == Command::Heartbeat) {
      send(rb, encode_broker_command(ready.peer, Command::Heartbeat));
      continue;
    }
    REQUIRE(m.command == Command::Reply);
    CHECK(to_string(m.client) == "client-1");
    auto reply = decode_app_reply(std::move(m.body));
    REQUIRE(reply.ok());
    CHECK(reply->id == "r1");
    CHECK(reply->status == 200);
    break;
  }
  // The first broker heard READY once, then heartbeats only: the worker did not come back.
  int readies = 0;
  while (auto f = recv(ra, 0ms)) readies += command_of(std::move(f)).command == Command::Ready;
  CHECK(readies == 0);

  // Then the second goes silent too. The worker heard a broker in this round of the list (the
  // second), so it goes back to the first at once, as in a failover back to the first of a pair,
  // and not after its back-off. The first stays silent: on to the second at once. The second
  // stays silent: a whole round heard from no broker, so now the back-off paces the next READY.
  const auto seconds_to_ready = [&](zmq::socket_t& r) {  // heartbeats of earlier sockets skipped
    const auto from = std::chrono::steady_clock::now();
    while (auto f = recv(r, 5s))
      if (command_of(std::move(f)).command == Command::Ready)
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - from).count();
    return -1.0;
  };
  const double back_to_first = seconds_to_ready(ra);
  CHECK(back_to_first >= 0.2);  // the silence of the second (300 ms, from its last message)
  CHECK(back_to_first < 1.5);   // ... without the 2 s back-off
  const double on_to_second = seconds_to_ready(rb);
  CHECK(on_to_second >= 0.25);
  CHECK(on_to_second < 1.5);
  const double round_again = seconds_to_ready(ra);
  CHECK(round_again >= 2.0);  // the silence and the 2 s back-off
  CHECK(round_again < 4.0);
}
