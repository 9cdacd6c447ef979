// The shared queue (--broker proxy): the proxy actor and the REP worker over real sockets (frames
// through unchanged, counters, stop and restart), then whole runs of the binary over inproc and
// tcp, with YOLO workers, through a broker restart and a worker crash; and the clear errors for
// what the proxy cannot do.
#include <doctest/doctest.h>

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <zmq_addon.hpp>

#include "src/wire/actor.hpp"
#include "threads/actors.hpp"
#include "src/config/config.hpp"
#include "src/wire/pipe.hpp"
#include "src/wire/protocol.hpp"
#include "src/wire/stats.hpp"
#include "run_binary.hpp"
#include "scenario_runs.hpp"
#include "sockets.hpp"

using namespace zyolo;
using zyolo_test::check_nothing_lost;
using zyolo_test::has;
using zyolo_test::recv;
using zyolo_test::run_report;
using zyolo_test::run_scenario;
using zyolo_test::send;
using zyolo_test::TempFile;

namespace {

Config proxy_config() {
  Config c = default_config();
  c.run.transport = "inproc";
  c.run.broker = "proxy";
  c.worker.model = "none";
  c.worker.service_ms = 0;
  validate(c);
  return c;
}

Actor start_proxy(zmq::context_t& ctx, const Config& c) {
  return Actor(ctx, "proxy", [c](zmq::context_t& x, zmq::socket_ref p) { proxy(x, p, c); });
}

// An actor's STATS: the JSON and the frames after it.
std::pair<nlohmann::json, Frames> stats_of(Actor& actor) {
  REQUIRE(send_pipe(actor.pipe(), PipeCommand::Stats));
  auto m = recv_pipe(actor.pipe());
  REQUIRE(m.ok());
  REQUIRE(m->command == PipeCommand::Stats);
  REQUIRE(!m->args.empty());
  auto j = nlohmann::json::parse(m->args[0].to_string_view());
  m->args.erase(m->args.begin());
  return {j, std::move(m->args)};
}

zmq::message_t text(std::string_view s) { return zmq::message_t(s.data(), s.size()); }

// The next answer on a client's DEALER, decoded as an MDP client reply carrying a zyolo reply.
AppReply answer_on(zmq::socket_t& client, const std::string& service = "yolo") {
  auto frames = recv(client);
  REQUIRE(frames);
  auto reply = decode_client_reply(std::move(*frames));
  REQUIRE(reply.ok());
  CHECK(reply->service == service);
  auto app = decode_app_reply(std::move(reply->body));
  REQUIRE(app.ok());
  return std::move(app.value());
}

}  // namespace

TEST_CASE("the proxy hands a client's frames to a REP socket and the answer back, and counts both") {
  zmq::context_t ctx = make_context();
  const Config c = proxy_config();
  Actor p = start_proxy(ctx, c);
  auto [before, waits] = stats_of(p);
  CHECK(before["requests"] == 0);
  CHECK(before["replies"] == 0);
  REQUIRE(waits.size() == 1);  // the frame of queue waits the supervisor reads: empty
  CHECK(waits[0].size() == 0);

  zmq::socket_t rep(ctx, zmq::socket_type::rep);
  rep.set(zmq::sockopt::linger, 0);
  rep.connect(c.backend());
  auto client = zyolo_test::dealer(ctx, "c0-test", c.frontend());
  send(client, encode_client_request("yolo", encode_app_request("c0-1", "", text("payload"))));

  auto got = recv(rep);
  REQUIRE(got);
  auto request = decode_rep_request(std::move(*got));  // [MDPC01][yolo][c0-1][""][payload]
  REQUIRE(request.ok());
  CHECK(request->service == "yolo");
  auto app = decode_app_request(std::move(request->body));
  REQUIRE(app.ok());
  CHECK(app->id == "c0-1");
  CHECK(app->payload.to_string_view() == "payload");
  send(rep, encode_rep_reply("yolo", encode_app_reply("c0-1", 200, "{}", text("payload"))));

  const AppReply answer = answer_on(client);  // in the shape an MDP broker answers in
  CHECK(answer.id == "c0-1");
  CHECK(answer.status == 200);

  const auto after = stats_of(p).first;
  CHECK(after["requests"] == 1);
  CHECK(after["replies"] == 1);
  CHECK(after["frontend"]["messages_in"] == 1);
  CHECK(after["backend"]["messages_in"] == 1);
  CHECK(after["cpu_us"].get<long>() >= 0);
}

TEST_CASE("the proxy stops on $TERM and a new one binds the same endpoints at once, 100 times") {
  zmq::context_t ctx = make_context();
  const Config c = proxy_config();
  for (int i = 0; i < 100; ++i) {
    Actor p = start_proxy(ctx, c);  // throws if the endpoints were still bound
    if (i % 10 == 0) CHECK(stats_of(p).first["requests"] == 0);
  }  // each destructor: $TERM, which the proxy actor turns into TERMINATE, then join
}

TEST_CASE("a REP worker echoes through the proxy, answers garbage with 400, and crashes on CRASH") {
  zmq::context_t ctx = make_context();
  Config c = proxy_config();
  Actor p = start_proxy(ctx, c);
  Actor w(ctx, "worker-w0", [c](zmq::context_t& x, zmq::socket_ref pipe) { rep_worker(x, pipe, c, "w0"); });
  auto client = zyolo_test::dealer(ctx, "c0-test", c.frontend());

  // Garbage first: a REP socket must answer before it reads again, so it answers 400.
  Frames garbage;
  garbage.emplace_back();
  garbage.push_back(text("NOT-MDP"));
  send(client, std::move(garbage));
  CHECK(answer_on(client).status == 400);

  send(client, encode_client_request("yolo", encode_app_request("c0-2", "", text("echo me"))));
  const AppReply good = answer_on(client);
  CHECK(good.id == "c0-2");
  CHECK(good.status == 200);
  CHECK(good.payload.to_string_view() == "echo me");

  // CRASH: the next request is never answered, and the worker says its STATS as it goes.
  REQUIRE(send_pipe(w.pipe(), PipeCommand::Crash));
  send(client, encode_client_request("yolo", encode_app_request("c0-3", "", text("lost"))));
  auto last = recv_pipe(w.pipe());
  REQUIRE(last.ok());
  CHECK(last->command == PipeCommand::Stats);
  const auto j = nlohmann::json::parse(last->args.at(0).to_string_view());
  CHECK(j["served"] == 1);
  CHECK(j["malformed"] == 1);
  CHECK(!recv(client, std::chrono::milliseconds(300)));  // c0-3 went down with the worker
}

TEST_CASE("the REP codec rejects what is not [MDPC01][service][body...] and never throws") {
  CHECK(decode_rep_request({}).fault() == Fault::Empty);
  Frames wrong;
  wrong.push_back(text("MDPW01"));
  wrong.push_back(text("yolo"));
  CHECK(decode_rep_request(std::move(wrong)).fault() == Fault::WrongProtocol);
  Frames no_service;
  no_service.push_back(text("MDPC01"));
  CHECK(decode_rep_request(std::move(no_service)).fault() == Fault::MissingFrame);
  Frames seven;
  for (int i = 0; i < 7; ++i) seven.emplace_back(8);
  CHECK(decode_proxy_statistics(seven).fault() == Fault::MissingFrame);
  Frames short_frame;
  for (int i = 0; i < 8; ++i) short_frame.emplace_back(i == 3 ? 4 : 8);
  CHECK(decode_proxy_statistics(short_frame).fault() == Fault::BadEnvelope);
}

TEST_CASE("zyolo run --broker proxy over inproc: every request answered once, round-robin") {
  auto j = run_report("run --broker proxy --transport inproc --model none --clients 8 --workers 3 "
                      "--requests 1500");
  check_nothing_lost(j);
  CHECK(j["run"]["broker"] == "proxy");
  CHECK(j["requests"]["answered"] == 1500);
  const long retries = j["requests"]["retries"];
  CHECK(j["broker"]["requests"].get<long>() == 1500 + retries);  // each attempt passed once
  long served = 0;
  REQUIRE(j["workers"].size() == 3);
  for (const auto& w : j["workers"]) {
    INFO(w.dump());
    CHECK(w["served"].get<long>() >= 300);  // round-robin: about 500 each
    served += w["served"].get<long>();
  }
  CHECK(served >= 1500);
}

TEST_CASE("zyolo run --broker proxy over tcp on free ports: every request answered once") {
  TempFile ports("proxy-tcp.toml", zyolo_test::own_endpoints_toml());
  auto j = run_report("run --broker proxy --transport tcp --config " + ports.path +
                      " --model none --clients 4 --workers 2 --requests 600");
  check_nothing_lost(j);
  CHECK(j["run"]["broker"] == "proxy");
  CHECK(j["run"]["transport"] == "tcp");
  CHECK(j["requests"]["answered"] == 600);
}

TEST_CASE("run.broker: mdp by default, proxy from a config file; anything else a clear error") {
  CHECK(default_config().run.broker == "mdp");
  CHECK(run_report("run --model none --requests 20")["run"]["broker"] == "mdp");
  TempFile proxy_file("proxy.toml", "[run]\nbroker = \"proxy\"\n");
  CHECK(run_report("run --config " + proxy_file.path + " --model none --requests 20")["run"]["broker"] == "proxy");

  auto r = zyolo_test::zyolo("run --broker bogus --model none --requests 5");
  CHECK(r.code == 2);
  CHECK(has(r.err, "--broker bogus: must be one of mdp, proxy, not 'bogus' (run.broker)"));
  TempFile bogus_file("bogus.toml", "[run]\nbroker = \"zmq\"\n");
  r = zyolo_test::zyolo("run --config " + bogus_file.path + " --model none --requests 5");
  CHECK(r.code == 2);
  CHECK(has(r.err, "key 'run.broker' must be one of mdp, proxy, not 'zmq'"));
}

TEST_CASE("what the proxy cannot do is refused with a reason: autoscale, several pools, the link") {
  auto r = zyolo_test::zyolo("run --broker proxy --autoscale --model none --requests 5");
  CHECK(r.code == 2);
  CHECK(has(r.err, "--autoscale"));
  CHECK(has(r.err, "demand"));
  TempFile pools("pools.toml", "[[pools]]\nservice = \"a\"\nmodel = \"none\"\n\n"
                               "[[pools]]\nservice = \"b\"\nmodel = \"none\"\n");
  r = zyolo_test::zyolo("run --broker proxy --config " + pools.path + " --requests 5");
  CHECK(r.code == 2);
  CHECK(has(r.err, "route by service"));
  for (const char* scenario : {"partition", "chaos"}) {
    CAPTURE(scenario);
    r = zyolo_test::zyolo(std::string("run --broker proxy --model none --scenario ") + scenario);
    CHECK(r.code == 2);
    CHECK(has(r.err, "partition, drop and delay need run.broker = mdp"));
  }
}

TEST_CASE("a YOLO fleet answers through the proxy") {
  const std::string shared = ZYOLO_SHARED_DIR;
  const std::string model = shared + "/models/yolov8n.onnx", images = shared + "/images";
  REQUIRE_MESSAGE(std::filesystem::exists(model), "shared data is missing: " << model);
  const std::string saved = "/tmp/zyolo-test-" + std::to_string(::getpid()) + "-proxy.jsonl";
  auto j = run_report("run --broker proxy --model " + model + " --images " + images +
                      " --clients 2 --workers 2 --requests 8 --save-detections " + saved);
  check_nothing_lost(j);
  CHECK(j["requests"]["answered"] == 8);
  CHECK(j["stages_ms"]["inference"]["p50"].get<double>() > 0);
  const std::string lines = zyolo_test::slurp(saved);
  std::remove(saved.c_str());
  CHECK(has(lines, "\"class\":\"dog\""));  // dog.jpg went round at least once
}

TEST_CASE("scenario broker-restart with the proxy: REP workers reconnect, clients retry, nothing lost") {
  auto j = run_scenario("broker-restart", "--broker proxy");
  check_nothing_lost(j);
  CHECK(j["broker"]["incarnations"] == 2);
  CHECK(j["requests"]["retries"].get<long>() > 0);  // what was in flight died with the proxy
  REQUIRE(j["events"].size() == 1);
  const auto& kill = j["events"][0];
  INFO(kill.dump());
  CHECK(has(kill["detail"].get<std::string>(), "proxy killed"));
  // Answers came again after the restart: over inproc only because each REP worker, hearing
  // nothing, connected a new socket (a connection to the old proxy is never made again).
  CHECK(kill["first_answer_s"].get<double>() >= 0);
}

TEST_CASE("scenario worker-crash with the proxy: what was queued for the crashed worker comes back by retries") {
  auto j = run_scenario("worker-crash", "--broker proxy");
  check_nothing_lost(j);
  bool crashed = false;
  for (const auto& w : j["workers"]) crashed = crashed || (w["id"] == "w1" && w["crashed"] == true);
  CHECK(crashed);
  CHECK(j["requests"]["retries"].get<long>() > 0);
}
