// The client against a fake broker that misbehaves on purpose: late and repeated answers are
// dropped and counted, never delivered; garbage is counted; a silent broker makes it retry on a
// new socket with the same routing id, until the deadline.
#include <doctest/doctest.h>

#include <map>
#include <nlohmann/json.hpp>
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

namespace {

struct FakeBroker {
  explicit FakeBroker(int in_flight = 1, int timeout_ms = 100)
      : in_flight_(in_flight), timeout_ms_(timeout_ms) {}
  int in_flight_, timeout_ms_;
  zmq::context_t ctx = make_context();
  Config config = [this] {
    Config c = default_config();
    c.run.transport = "inproc";
    c.worker.model = "none";
    c.run.duration_s = 0;  // each test gives its client a request count
    c.run.requests = 1;
    c.client.in_flight = in_flight_;
    c.client.timeout_ms = timeout_ms_;
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

  // Where the client reports (what the supervisor binds in a run).
  ReportTo to{"inproc://test-client-reports", 0};
  zmq::socket_t reports = zyolo_test::report_socket(ctx, to.endpoint);

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

// Reads the client's reports until DONE; returns its totals and the records seen.
nlohmann::json wait_done(zmq::socket_t& reports, std::vector<ClientRecord>& records) {
  for (;;) {
    auto frames = zyolo_test::recv(reports);
    REQUIRE(frames.has_value());
    auto report = decode_report(std::move(*frames));
    REQUIRE(report.ok());
    CHECK(report->client == 0);
    const PipeMessage& m = report->message;
    if (m.command == PipeCommand::Records) {
      auto r = decode_args<ClientRecords>(m);
      REQUIRE(r.ok());
      records.insert(records.end(), r->begin(), r->end());
    } else {
      REQUIRE(m.command == PipeCommand::Done);
      return nlohmann::json::parse(m.args.at(0).to_string_view());
    }
  }
}

}  // namespace

TEST_CASE("repeated and late answers are dropped and counted, never delivered twice") {
  FakeBroker fb;
  Actor c(fb.ctx, "client", [cfg = fb.config, to = fb.to](zmq::context_t& x, zmq::socket_ref p) { client(x, p, cfg, "c0", 2, to); });
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
  auto totals = wait_done(fb.reports, records);
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
  Actor c(fb.ctx, "client", [cfg = fb.config, to = fb.to](zmq::context_t& x, zmq::socket_ref p) { client(x, p, cfg, "c0", 1, to); });
  auto [who, id] = fb.next();
  fb.answer(who, id, "someone else's payload");
  std::vector<ClientRecord> records;
  CHECK(wait_done(fb.reports, records)["mismatched"] == 1);
}

TEST_CASE("a silent broker: the client resends on a new socket with the same routing id") {
  FakeBroker fb;
  Actor c(fb.ctx, "client", [cfg = fb.config, to = fb.to](zmq::context_t& x, zmq::socket_ref p) { client(x, p, cfg, "c0", 1, to); });
  auto [who1, id1] = fb.next();  // ignored: the client times out after 100 ms
  auto [who2, id2] = fb.next();
  auto [who3, id3] = fb.next();
  CHECK(who2 == who1);
  CHECK(who3 == who1);
  CHECK(id2 == id1);
  CHECK(id3 == id1);
  fb.answer(who3, id3, fb.last_payload);
  std::vector<ClientRecord> records;
  auto totals = wait_done(fb.reports, records);
  REQUIRE(records.size() == 1);
  CHECK(records[0].status == 200);
  CHECK(records[0].retries == 2);
  CHECK(totals["reconnects"] == 2);
}

// The adaptive timeout learns a slow service and still catches a real loss: answers that take
// 300 ms (against a 2 s starting timeout) cause no retry, and a request the broker then drops is
// sent again after about the learnt time (srtt + 4 x variation, at least 2 x srtt: ~0.6 s), well
// before the 2 s a fixed timeout would wait.
TEST_CASE("adaptive timeout: a slow service is not retried, a lost request is, within the learnt bound") {
  FakeBroker fb(1, 2000);
  fb.config.client.deadline_ms = 20000;
  REQUIRE(fb.config.client.adaptive_timeout);
  Actor c(fb.ctx, "client", [cfg = fb.config, to = fb.to](zmq::context_t& x, zmq::socket_ref p) { client(x, p, cfg, "c0", 8, to); });
  for (int i = 0; i < 6; ++i) {
    auto [who, id] = fb.next();
    std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the service time, not a wait for the client
    fb.answer(who, id, fb.last_payload);
  }
  auto [who, lost] = fb.next();  // dropped, as a broker that lost it would
  const auto dropped_at = std::chrono::steady_clock::now();
  auto [again, resent] = fb.next();
  const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - dropped_at).count();
  CHECK(resent == lost);
  CHECK(waited >= 0.3);  // not before the service time it learnt: a retry means a loss
  CHECK(waited < 1.5);   // ... and well before the fixed 2 s
  fb.answer(again, resent, fb.last_payload);
  auto [who8, id8] = fb.next();
  fb.answer(who8, id8, fb.last_payload);
  std::vector<ClientRecord> records;
  auto totals = wait_done(fb.reports, records);
  REQUIRE(records.size() == 8);
  int retried = 0;
  for (const auto& r : records) {
    CHECK(r.status == 200);
    retried += r.retries;
  }
  CHECK(retried == 1);  // the lost one, once
}

TEST_CASE("a window of 4: four requests outstanding at once, answered in any order, each recorded once") {
  FakeBroker fb(4, 5000);  // a timeout far beyond the test: no retry
  Actor c(fb.ctx, "client", [cfg = fb.config, to = fb.to](zmq::context_t& x, zmq::socket_ref p) { client(x, p, cfg, "c0", 6, to); });
  std::map<std::string, std::string> payloads;  // request id -> its echo payload
  std::string who;
  for (int i = 0; i < 4; ++i) {
    auto [from, id] = fb.next();
    who = from;
    payloads[id] = fb.last_payload;
  }
  CHECK(payloads.size() == 4);
  CHECK(payloads.count("c0-0") == 1);
  CHECK(payloads.count("c0-3") == 1);
  // The window is full: nothing more comes until an answer leaves.
  CHECK_FALSE(zyolo_test::recv(fb.router, std::chrono::milliseconds(200)).has_value());
  fb.answer(who, "c0-2", payloads["c0-2"]);
  fb.answer(who, "c0-0", payloads["c0-0"]);
  for (int i = 0; i < 2; ++i) {  // two answers made room for two more
    auto [from, id] = fb.next();
    payloads[id] = fb.last_payload;
  }
  CHECK(payloads.count("c0-5") == 1);
  fb.answer(who, "c0-0", payloads["c0-0"]);  // a repeated answer: dropped
  for (const char* id : {"c0-5", "c0-1", "c0-3", "c0-4"}) fb.answer(who, id, payloads[id]);
  std::vector<ClientRecord> records;
  auto totals = wait_done(fb.reports, records);
  CHECK(totals["sent"] == 6);
  CHECK(totals["answered"] == 6);
  CHECK(totals["duplicates_dropped"] == 1);
  CHECK(totals["mismatched"] == 0);
  REQUIRE(records.size() == 6);
  std::set<uint32_t> seqs;
  for (const auto& r : records) {
    CHECK(r.status == 200);
    CHECK(r.retries == 0);
    seqs.insert(r.seq);
  }
  CHECK(seqs == std::set<uint32_t>{0, 1, 2, 3, 4, 5});
  CHECK(records[0].seq == 2);  // in the order they were answered
  CHECK(records[1].seq == 0);
}

TEST_CASE("a silent broker and a window of 3: every outstanding request is resent on the new socket") {
  FakeBroker fb(3, 100);
  Actor c(fb.ctx, "client", [cfg = fb.config, to = fb.to](zmq::context_t& x, zmq::socket_ref p) { client(x, p, cfg, "c0", 3, to); });
  std::set<std::string> first, second;
  std::string who1, who2;
  for (int i = 0; i < 3; ++i) first.insert(fb.next().second);  // ignored: a timeout later, again
  for (int i = 0; i < 3; ++i) {
    auto [from, id] = fb.next();
    who2 = from;
    second.insert(id);
  }
  CHECK(first == std::set<std::string>{"c0-0", "c0-1", "c0-2"});
  CHECK(second == first);
  for (const auto& id : second) {
    const std::string echo = id + std::string(fb.config.client.payload_bytes - id.size(), '.');
    fb.answer(who2, id, echo);
  }
  std::vector<ClientRecord> records;
  auto totals = wait_done(fb.reports, records);
  REQUIRE(records.size() == 3);
  for (const auto& r : records) {
    CHECK(r.status == 200);
    CHECK(r.retries >= 1);
  }
  CHECK(totals["answered"] == 3);
  CHECK(totals["mismatched"] == 0);
  CHECK(totals["reconnects"].get<long>() >= 1);
}

// Over tcp the client watches its connection: when the broker's end closes and a broker binds the
// endpoint again, the outstanding request goes out again as soon as the connection is back, not
// when its (here 20 s) timeout would send it.
TEST_CASE("over tcp, a connection that comes back has the outstanding request sent again at once") {
  zmq::context_t ctx = make_context();
  Config c = default_config();
  c.run.transport = "tcp";
  c.endpoints.tcp_frontend = "tcp://127.0.0.1:" + std::to_string(zyolo_test::free_port());
  c.worker.model = "none";
  c.run.duration_s = 0;
  c.run.requests = 1;
  c.client.adaptive_timeout = false;
  c.client.timeout_ms = 20000;
  c.client.deadline_ms = 30000;
  c.sockets.reconnect_ivl_ms = 50;
  c.sockets.reconnect_ivl_max_ms = 100;
  validate(c);
  // A stand-in broker's frontend; binding again may have to wait for the old listener to go.
  auto bind = [&] {
    zmq::socket_t s(ctx, zmq::socket_type::router);
    s.set(zmq::sockopt::linger, 0);
    s.set(zmq::sockopt::router_handover, true);
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    for (;;) {
      try {
        s.bind(c.endpoints.tcp_frontend);
        return s;
      } catch (const zmq::error_t& e) {
        REQUIRE(e.num() == EADDRINUSE);
        REQUIRE(std::chrono::steady_clock::now() < until);
        zmq::poll(static_cast<zmq::pollitem_t*>(nullptr), 0, std::chrono::milliseconds(10));
      }
    }
  };
  std::optional<zmq::socket_t> router(bind());
  const ReportTo report_to{"inproc://test-client-reports", 0};
  zmq::socket_t reports = zyolo_test::report_socket(ctx, report_to.endpoint);
  Actor cl(ctx, "client", [c, report_to](zmq::context_t& x, zmq::socket_ref p) { client(x, p, c, "c0", 1, report_to); });
  auto id_of = [](Frames f) {
    auto m = decode_client_request(std::move(f));
    REQUIRE(m.ok());
    auto r = decode_app_request(std::move(m->body));
    REQUIRE(r.ok());
    return std::make_pair(to_string(m->sender), std::pair{r->id, to_string(r->payload)});
  };
  auto first = zyolo_test::recv(*router);
  REQUIRE(first.has_value());
  CHECK(id_of(std::move(*first)).second.first == "c0-0");
  router.reset();      // the broker goes, and its connections with it
  router.emplace(bind());  // a new one on the same endpoint
  auto again = zyolo_test::recv(*router, std::chrono::seconds(5));  // far inside the timeout
  REQUIRE(again.has_value());
  const auto [who, request] = id_of(std::move(*again));
  CHECK(request.first == "c0-0");
  zmq::message_t to(who.data(), who.size());
  Frames reply = encode_client_reply(to, c.run.service,
                                     encode_app_reply(request.first, 200, "{}", zmq::message_t(request.second)));
  REQUIRE(send_frames(*router, reply));
  std::vector<ClientRecord> records;
  auto totals = wait_done(reports, records);
  REQUIRE(records.size() == 1);
  CHECK(records[0].status == 200);
  CHECK(records[0].retries == 1);      // sent again once, on the connection that came back
  CHECK(totals["reconnects"] == 0);    // ... without a new socket: no timeout passed
}

// A broker pair: the client is given two frontends, "A,B". A takes the requests and never answers
// (a broker that died holding them), or is not there at all; after the timeout the client's new
// socket goes to B with every outstanding request, ids unchanged. B answers each twice (the last
// once): each request is delivered once, the repeats dropped and counted; the requests sent after
// the switch go to B too (no timeout, no move).
namespace {
void broker_pair_case(bool first_listens) {
  zmq::context_t ctx = make_context();
  const std::string a = "tcp://127.0.0.1:" + std::to_string(zyolo_test::free_port());
  const std::string b = "tcp://127.0.0.1:" + std::to_string(zyolo_test::free_port());
  Config c = default_config();
  c.run.transport = "tcp";
  c.endpoints.tcp_frontend = a + "," + b;
  c.worker.model = "none";
  c.run.duration_s = 0;
  c.run.requests = 6;
  c.client.in_flight = 3;
  c.client.adaptive_timeout = false;
  c.client.timeout_ms = 500;
  c.client.deadline_ms = 10000;
  validate(c);
  REQUIRE(c.frontends() == std::vector<std::string>{a, b});
  auto router = [&](const std::string& endpoint) {
    zmq::socket_t s(ctx, zmq::socket_type::router);
    s.set(zmq::sockopt::linger, 0);
    s.set(zmq::sockopt::router_handover, true);
    s.bind(endpoint);
    return s;
  };
  std::optional<zmq::socket_t> ra;
  if (first_listens) ra.emplace(router(a));
  zmq::socket_t rb = router(b);
  const ReportTo report_to{"inproc://test-client-reports", 0};
  zmq::socket_t reports = zyolo_test::report_socket(ctx, report_to.endpoint);
  Actor cl(ctx, "client", [c, report_to](zmq::context_t& x, zmq::socket_ref p) { client(x, p, c, "c0", 6, report_to); });
  struct Request {
    std::string who, id, payload;
  };
  auto next = [](zmq::socket_t& s) {
    auto f = zyolo_test::recv(s);
    REQUIRE(f.has_value());
    auto m = decode_client_request(std::move(*f));
    REQUIRE(m.ok());
    auto r = decode_app_request(std::move(m->body));
    REQUIRE(r.ok());
    return Request{to_string(m->sender), r->id, to_string(r->payload)};
  };
  std::set<std::string> at_a, at_b;
  if (ra)
    for (int i = 0; i < 3; ++i) at_a.insert(next(*ra).id);  // held, never answered
  for (int i = 0; i < 6; ++i) {
    const Request r = next(rb);
    at_b.insert(r.id);
    // Each answered twice but the last: a repeat of the last could come after the client ended.
    // The others' repeats come before the next answer on the same connection, so each is read.
    for (int twice = 0; twice < (i < 5 ? 2 : 1); ++twice) {
      zmq::message_t to(r.who.data(), r.who.size());
      Frames reply = encode_client_reply(to, c.run.service, encode_app_reply(r.id, 200, "{}", zmq::message_t(r.payload)));
      REQUIRE(send_frames(rb, reply));
    }
  }
  if (ra) CHECK(at_a == std::set<std::string>{"c0-0", "c0-1", "c0-2"});
  CHECK(at_b == std::set<std::string>{"c0-0", "c0-1", "c0-2", "c0-3", "c0-4", "c0-5"});
  std::vector<ClientRecord> records;
  auto totals = wait_done(reports, records);
  CHECK(totals["sent"] == 6);
  CHECK(totals["answered"] == 6);
  CHECK(totals["mismatched"] == 0);
  CHECK(totals["duplicates_dropped"] == 5);
  CHECK(totals["reconnects"] == 1);  // one move, from A to B
  REQUIRE(records.size() == 6);
  std::set<uint32_t> seqs;
  for (const auto& r : records) {
    CHECK(r.status == 200);
    CHECK(r.retries == (r.seq < 3 ? 1 : 0));  // the first three were sent to A, then to B
    seqs.insert(r.seq);
  }
  CHECK(seqs == std::set<uint32_t>{0, 1, 2, 3, 4, 5});
}
}  // namespace

TEST_CASE("two frontends, the first silent: after the timeout every request goes to the second, once") {
  broker_pair_case(true);
}

TEST_CASE("two frontends, the first not there: the requests go to the second after the timeout") {
  broker_pair_case(false);
}
