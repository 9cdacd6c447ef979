// The attached-thread helper: synchronous start and stop, a thousand times over; start-up
// failures surface as ActorError in the parent; pipes carry messages both ways.
#include <doctest/doctest.h>

#include <pthread.h>

#include <stdexcept>
#include <string>
#include <utility>

#include "src/wire/actor.hpp"
#include "threads/actors.hpp"
#include "src/wire/pipe.hpp"
#include "src/wire/protocol.hpp"
#include "src/wire/stats.hpp"

using namespace zyolo;

namespace {

// A minimal actor: answers STATS with "pong" until $TERM.
void pong(zmq::context_t&, zmq::socket_ref pipe) {
  signal_ready(pipe);
  for (;;) {
    auto m = recv_pipe(pipe);
    if (!m || m->command == PipeCommand::Term) return;
    if (m->command == PipeCommand::Stats) send_pipe(pipe, PipeCommand::Stats, text_frames({"pong"}));
  }
}

}  // namespace

TEST_CASE("an actor starts and stops a thousand times") {
  zmq::context_t ctx = make_context();
  for (int i = 0; i < 1000; ++i) {
    Actor a(ctx, "pong", pong);
    send_pipe(a.pipe(), PipeCommand::Stats);
    auto reply = recv_pipe(a.pipe());
    REQUIRE(reply.ok());
    REQUIRE(reply->command == PipeCommand::Stats);
    REQUIRE(to_string(reply->args.at(0)) == "pong");
  }
}

TEST_CASE("the broker actor starts and stops a thousand times on the same endpoints") {
  zmq::context_t ctx = make_context();
  Config config = default_config();
  // inproc: its unbind is synchronous, which is what lets a restarted broker bind at once (tcp
  // releases a port asynchronously; the supervisor retries a broker's bind for that).
  config.run.transport = "inproc";
  validate(config);
  for (int i = 0; i < 1000; ++i) {
    Actor b(ctx, "broker", [config](zmq::context_t& c, zmq::socket_ref p) { broker(c, p, config); });
  }
  // Each one unbound its endpoints on the way out, so a plain socket can bind them now.
  zmq::socket_t s(ctx, zmq::socket_type::router);
  CHECK_NOTHROW(s.bind(config.frontend()));
}

TEST_CASE("workers and clients start and stop many times") {
  zmq::context_t ctx = make_context();
  Config config = default_config();
  config.worker.model = "none";
  config.run.duration_s = 0;  // each client sends the one request it is given
  config.run.requests = 1;
  validate(config);
  Actor b(ctx, "broker", [config](zmq::context_t& c, zmq::socket_ref p) { broker(c, p, config); });
  // Where the clients report, as the supervisor's clients do.
  zmq::socket_t reports(ctx, zmq::socket_type::pull);
  reports.set(zmq::sockopt::linger, 0);
  reports.bind("inproc://test-actor-reports");
  for (int i = 0; i < 200; ++i) {
    const ReportTo to{"inproc://test-actor-reports", static_cast<uint32_t>(i)};
    Actor w(ctx, "worker", [config](zmq::context_t& c, zmq::socket_ref p) { worker(c, p, config, "w"); });
    Actor cl(ctx, "client", [config, to](zmq::context_t& c, zmq::socket_ref p) { client(c, p, config, "c", 1, to); });
    // RECORDS, then DONE; a request that takes seconds here means one was lost somewhere.
    Decoded<ClientReport> done = Fault::Empty;
    do {
      zmq::pollitem_t item{reports.handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, std::chrono::milliseconds(5000));
      if (!(item.revents & ZMQ_POLLIN)) {
        send_pipe(b.pipe(), PipeCommand::Stats);
        auto stats = recv_pipe(b.pipe());
        FAIL("iteration " << i << ": no answer in 5 s; broker: " << to_string(stats->args.at(0)));
      }
      auto frames = recv_frames(reports);
      REQUIRE(frames.has_value());
      done = decode_report(std::move(*frames));
      REQUIRE(done.ok());
      REQUIRE(done->client == static_cast<uint32_t>(i));  // this client's, not an earlier one's
    } while (done->message.command == PipeCommand::Records);
    REQUIRE(done->message.command == PipeCommand::Done);
  }
}

TEST_CASE("a failure before $READY is an ActorError carrying the actor's words") {
  zmq::context_t ctx = make_context();
  auto failing = [](zmq::context_t&, zmq::socket_ref) { throw std::runtime_error("model missing"); };
  try {
    Actor a(ctx, "doomed", failing);
    FAIL("the constructor returned");
  } catch (const ActorError& e) {
    CHECK(std::string(e.what()) == "doomed: model missing");
  }
  // A broker whose endpoint is taken fails the same way, naming the endpoint's error.
  Config config = default_config();
  validate(config);
  zmq::socket_t squatter(ctx, zmq::socket_type::router);
  squatter.bind(config.frontend());
  CHECK_THROWS_AS(Actor(ctx, "broker", [config](zmq::context_t& c, zmq::socket_ref p) { broker(c, p, config); }),
                  ActorError);
}

TEST_CASE("a failure after $READY arrives on the pipe as $ERROR") {
  zmq::context_t ctx = make_context();
  Actor a(ctx, "late", [](zmq::context_t&, zmq::socket_ref pipe) {
    signal_ready(pipe);
    throw std::runtime_error("lost the plot");
  });
  auto m = recv_pipe(a.pipe());
  REQUIRE(m.ok());
  CHECK(m->command == PipeCommand::Error);
  CHECK(to_string(m->args.at(0)) == "lost the plot");
}

TEST_CASE("an actor's thread carries the actor's name, cut to the kernel's 15 bytes") {
  zmq::context_t ctx = make_context();
  // The thread says its own name on the pipe: what `top -H`, `ps -L` and perf show for it.
  auto own_name = [](zmq::context_t&, zmq::socket_ref pipe) {
    signal_ready(pipe);
    char name[16] = {};
    ::pthread_getname_np(::pthread_self(), name, sizeof name);
    send_pipe(pipe, PipeCommand::Stats, text_frames({name}));
    while (auto m = recv_pipe(pipe))
      if (m->command == PipeCommand::Term) return;
  };
  for (const auto& [given, shown] : {std::pair<std::string, std::string>{"broker", "broker"},
                                     {"client-c123456789", "client-c1234567"}}) {
    Actor a(ctx, given, own_name);
    auto m = recv_pipe(a.pipe());
    REQUIRE(m.ok());
    CHECK(m->command == PipeCommand::Stats);
    CHECK(to_string(m->args.at(0)) == shown);
  }
}
