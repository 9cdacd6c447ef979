// The client against a fake broker that misbehaves on purpose: late and repeated answers are
// dropped and counted, never delivered; garbage is counted; a silent broker makes it retry on a
// new socket with the same routing id, until the deadline.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>
#include <zmq_addon.hpp>

#include "src/wire/actor.hpp"
#include "threads/actors.hpp"
#include "src/wire/pipe.hpp"
#include "src/wire/protocol.hpp"
#include "src/wire/stats.hpp"

using namespace zyolo;

namespace {

struct FakeBroker {
  zmq::context_t ctx = make_context();
  Config config = [] {
    Config c = default_config();
    c.run.transport = "inproc";
    c.worker.model = "none";
    c.run.duration_s = 0;  // each test gives its client a request count
    c.run.requests = 1;
    c.client.timeout_ms = 100;
    c.client.deadline_ms = 5000;
    validate(c);
    return c;
  }();
  zmq::socket_t router = [this] {
    zmq::socket_t s(ctx, zmq::socket_type::router);
    s.set(zmq::sockopt::router_handover, true);
    s.bind(config.frontend());
    return s;
  }();

  std::string last_payload;

  // The next request: the client's routing id and the request id (its payload kept for echoes).
  std::pair<std::string, std::string> next() {
    auto f = recv_frames(router);
    REQUIRE(f.has_value());
    auto m = decode_client_request(std::move(*f));
    REQUIRE(m.ok());
    auto r = decode_app_request(std::move(m->body));
    REQUIRE(r.ok());
    last_payload = to_string(r->payload);
    return {to_string(m->sender), r->id};
  }

  void answer(const std::string& client, const std::string& id, std::string payload) {
    zmq::message_t to(client.data(), client.size());
    Frames reply = encode_client_reply(to, "yolo", encode_app_reply(id, 200, "{}", zmq::message_t(payload)));
    REQUIRE(send_frames(router, reply));
  }
};

// Reads pipe messages until DONE; returns its totals and the records seen.
nlohmann::json wait_done(Actor& a, std::vector<ClientRecord>& records) {
  for (;;) {
    auto m = recv_pipe(a.pipe());
    REQUIRE(m.ok());
    if (m->command == PipeCommand::Records) {
      auto r = unpack_records(m->args.at(0));
      REQUIRE(r.has_value());
      records.insert(records.end(), r->begin(), r->end());
    } else {
      REQUIRE(m->command == PipeCommand::Done);
      return nlohmann::json::parse(m->args.at(0).to_string_view());
    }
  }
}

}  // namespace

TEST_CASE("repeated and late answers are dropped and counted, never delivered twice") {
  FakeBroker fb;
  Actor c(fb.ctx, "client", [cfg = fb.config](zmq::context_t& x, zmq::socket_ref p) { client(x, p, cfg, "c0", 2); });
  auto [who, first] = fb.next();
  CHECK(first == "c0-0");
  const std::string echo0 = fb.last_payload;
  fb.answer(who, "c0-0", echo0);  // the answer
  fb.answer(who, "c0-0", echo0);  // the same answer again
  auto [who2, second] = fb.next();
  CHECK(who2 == who);
  CHECK(second == "c0-1");
  fb.answer(who, "c0-0", echo0);  // a late answer to the first request
  Frames garbage = text_frames({who, "", "MDPC01"});
  REQUIRE(send_frames(fb.router, garbage));
  fb.answer(who, "c0-1", fb.last_payload);
  std::vector<ClientRecord> records;
  auto totals = wait_done(c, records);
  CHECK(totals["sent"] == 2);
  CHECK(totals["duplicates_dropped"] == 2);
  CHECK(totals["malformed"] == 1);
  CHECK(totals["mismatched"] == 0);
  REQUIRE(records.size() == 2);
  CHECK(records[0].seq == 0);
  CHECK(records[1].seq == 1);
  CHECK(records[0].status == 200);
}

TEST_CASE("an echo that does not match the request is counted as mismatched") {
  FakeBroker fb;
  Actor c(fb.ctx, "client", [cfg = fb.config](zmq::context_t& x, zmq::socket_ref p) { client(x, p, cfg, "c0", 1); });
  auto [who, id] = fb.next();
  fb.answer(who, id, "someone else's payload");
  std::vector<ClientRecord> records;
  CHECK(wait_done(c, records)["mismatched"] == 1);
}

TEST_CASE("a silent broker: the client resends on a new socket with the same routing id") {
  FakeBroker fb;
  Actor c(fb.ctx, "client", [cfg = fb.config](zmq::context_t& x, zmq::socket_ref p) { client(x, p, cfg, "c0", 1); });
  auto [who1, id1] = fb.next();  // ignored: the client times out after 100 ms
  auto [who2, id2] = fb.next();
  auto [who3, id3] = fb.next();
  CHECK(who2 == who1);
  CHECK(who3 == who1);
  CHECK(id2 == id1);
  CHECK(id3 == id1);
  fb.answer(who3, id3, fb.last_payload);
  std::vector<ClientRecord> records;
  auto totals = wait_done(c, records);
  REQUIRE(records.size() == 1);
  CHECK(records[0].status == 200);
  CHECK(records[0].retries == 2);
  CHECK(totals["reconnects"] == 2);
}
