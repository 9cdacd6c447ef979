// The codec: every message round-trips, and every kind of malformed frame is a Fault, not a crash.
#include <doctest/doctest.h>

#include <random>

#include "src/wire/pipe.hpp"
#include "src/wire/protocol.hpp"
#include "src/wire/stats.hpp"

using namespace zyolo;

namespace {

Frames frames(std::initializer_list<std::string_view> parts) { return text_frames(parts); }

Frames copy(const Frames& f) {
  Frames out;
  for (const auto& m : f) out.emplace_back(m.data(), m.size());
  return out;
}

Frames with_peer(std::string_view peer, Frames f) {
  Frames out = frames({peer});
  for (auto& m : f) out.push_back(std::move(m));
  return out;
}

std::string cmd(Command c) { return std::string(1, static_cast<char>(c)); }

}  // namespace

TEST_CASE("client request and reply round-trip") {
  auto sent = encode_client_request("yolo", encode_app_request("c1-7", "{}", zmq::message_t(std::string("img"))));
  REQUIRE(sent.size() == 6);
  CHECK(sent[0].size() == 0);
  CHECK(sent[1].to_string_view() == "MDPC01");
  auto at_broker = decode_client_request(with_peer("CLIENT", std::move(sent)));
  REQUIRE(at_broker.ok());
  CHECK(to_string(at_broker->sender) == "CLIENT");
  CHECK(at_broker->service == "yolo");
  auto req = decode_app_request(std::move(at_broker->body));
  REQUIRE(req.ok());
  CHECK(req->id == "c1-7");
  CHECK(req->options == "{}");
  CHECK(req->payload.to_string_view() == "img");

  zmq::message_t client(std::string("CLIENT"));
  auto reply = encode_client_reply(client, "yolo", encode_app_reply("c1-7", 200, "[]", zmq::message_t(std::string("p"))));
  CHECK(to_string(reply[0]) == "CLIENT");
  reply.erase(reply.begin());  // the ROUTER strips the routing id on the way out
  auto at_client = decode_client_reply(std::move(reply));
  REQUIRE(at_client.ok());
  CHECK(at_client->service == "yolo");
  auto rep = decode_app_reply(std::move(at_client->body));
  REQUIRE(rep.ok());
  CHECK(rep->id == "c1-7");
  CHECK(rep->status == 200);
  CHECK(rep->json == "[]");
  CHECK(rep->payload.to_string_view() == "p");
}

TEST_CASE("worker commands round-trip") {
  auto ready = decode_from_worker(with_peer("W", encode_worker_ready("yolo.v8n")));
  REQUIRE(ready.ok());
  CHECK(ready->command == Command::Ready);
  CHECK(ready->service == "yolo.v8n");
  CHECK(to_string(ready->peer) == "W");

  for (auto c : {Command::Heartbeat, Command::Disconnect}) {
    auto from_worker = decode_from_worker(with_peer("W", encode_worker_command(c)));
    REQUIRE(from_worker.ok());
    CHECK(from_worker->command == c);
    zmq::message_t peer(std::string("W"));
    auto out = encode_broker_command(peer, c);
    out.erase(out.begin());
    auto at_worker = decode_from_broker(std::move(out));
    REQUIRE(at_worker.ok());
    CHECK(at_worker->command == c);
  }

  zmq::message_t peer(std::string("W"));
  auto request = encode_broker_request(peer, zmq::message_t(std::string("C")), frames({"a", "b", "c"}));
  CHECK(to_string(request[0]) == "W");
  request.erase(request.begin());
  auto at_worker = decode_from_broker(std::move(request));
  REQUIRE(at_worker.ok());
  CHECK(at_worker->command == Command::Request);
  CHECK(to_string(at_worker->client) == "C");
  REQUIRE(at_worker->body.size() == 3);
  CHECK(at_worker->body[2].to_string_view() == "c");

  auto reply = decode_from_worker(with_peer("W", encode_worker_reply(zmq::message_t(std::string("C")), frames({"x"}))));
  REQUIRE(reply.ok());
  CHECK(reply->command == Command::Reply);
  CHECK(to_string(reply->client) == "C");
  REQUIRE(reply->body.size() == 1);
}

// The broker's hot path: views decode what the owning decoders decode, and the senders put on
// the wire exactly what the encoders build, over a real ROUTER.
TEST_CASE("views and direct senders match the decoders and encoders") {
  Frames in = with_peer("CLIENT", encode_client_request("yolo", encode_app_request("c1-7", "{}", zmq::message_t(std::string(100, 'p')))));
  auto view = view_client_request(in);
  REQUIRE(view.ok());
  CHECK(view->sender->to_string_view() == "CLIENT");
  CHECK(view->service == "yolo");
  REQUIRE(view->body.size() == 3);
  CHECK(peek_request_id(view->body) == "c1-7");
  Frames bad = frames({"CLIENT", "", "MDPC01"});
  CHECK(view_client_request(bad).fault() == Fault::MissingFrame);

  Frames reply = with_peer("W", encode_worker_reply(zmq::message_t(std::string("C")), frames({"c1-7", "200", "{}", "x"})));
  auto wv = view_from_worker(reply);
  REQUIRE(wv.ok());
  CHECK(wv->command == Command::Reply);
  CHECK(wv->client->to_string_view() == "C");
  CHECK(peek_request_id(wv->body) == "c1-7");

  zmq::context_t ctx;
  zmq::socket_t router(ctx, zmq::socket_type::router), dealer(ctx, zmq::socket_type::dealer);
  router.set(zmq::sockopt::router_mandatory, true);
  router.bind("inproc://direct-senders");
  dealer.set(zmq::sockopt::routing_id, "W");
  dealer.connect("inproc://direct-senders");
  const zmq::message_t peer(std::string("W")), client(std::string("C"));
  Frames body = frames({"c1-7", "{}", std::string(100, 'p')});
  REQUIRE(send_broker_request(router, peer, client, body, zmq::send_flags::dontwait));
  CHECK(body[2].size() == 100);  // shared: the broker keeps its own to re-queue
  auto got = recv_frames(dealer);
  REQUIRE(got);
  Frames expected = encode_broker_request(peer, zmq::message_t(std::string("C")), copy(body));
  expected.erase(expected.begin());
  REQUIRE(got->size() == expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i) CHECK((*got)[i] == expected[i]);

  REQUIRE(send_client_reply(router, peer, "yolo", body, zmq::send_flags::dontwait));
  got = recv_frames(dealer);
  REQUIRE(got);
  expected = encode_client_reply(peer, "yolo", frames({"c1-7", "{}", std::string(100, 'p')}));
  expected.erase(expected.begin());
  REQUIRE(got->size() == expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i) CHECK((*got)[i] == expected[i]);

  // A peer that is not there: nothing is sent, and the body is still the caller's.
  const zmq::message_t nobody(std::string("NOBODY"));
  Frames kept = frames({"c1-8", "{}", "y"});
  CHECK_THROWS_AS(send_broker_request(router, nobody, client, kept, zmq::send_flags::dontwait), zmq::error_t);
  CHECK(kept[2].to_string_view() == "y");
}

TEST_CASE("malformed client messages are faults") {
  struct Case {
    const char* what;
    Frames msg;
    Fault fault;
  };
  std::vector<Case> cases;
  cases.push_back({"nothing", {}, Fault::Empty});
  cases.push_back({"only a routing id", frames({"P"}), Fault::MissingDelimiter});
  cases.push_back({"no delimiter", frames({"P", "MDPC01", "yolo", "x"}), Fault::MissingDelimiter});
  cases.push_back({"delimiter not empty", frames({"P", "z", "MDPC01", "yolo"}), Fault::MissingDelimiter});
  cases.push_back({"one empty frame", frames({"P", ""}), Fault::Empty});
  cases.push_back({"no header", frames({"P", "", ""}), Fault::WrongProtocol});
  cases.push_back({"wrong header", frames({"P", "", "MDPC02", "yolo"}), Fault::WrongProtocol});
  cases.push_back({"worker header", frames({"P", "", "MDPW01", "yolo"}), Fault::WrongProtocol});
  cases.push_back({"no service", frames({"P", "", "MDPC01"}), Fault::MissingFrame});
  cases.push_back({"empty service", frames({"P", "", "MDPC01", ""}), Fault::BadService});
  cases.push_back({"long service", frames({"P", "", "MDPC01", std::string(256, 's')}), Fault::BadService});
  Frames many = frames({"P", "", "MDPC01", "yolo"});
  for (std::size_t i = 0; i < kMaxBodyFrames + 1; ++i) many.emplace_back();
  cases.push_back({"too many frames", std::move(many), Fault::TooManyFrames});
  Frames flood = frames({"P", "garbage"});  // more frames than any MDP message: named so first
  for (int i = 0; i < 1000; ++i) flood.emplace_back();
  cases.push_back({"a flood of frames", std::move(flood), Fault::TooManyFrames});
  for (auto& c : cases) {
    CAPTURE(c.what);
    auto d = decode_client_request(std::move(c.msg));
    REQUIRE_FALSE(d.ok());
    CHECK(d.fault() == c.fault);
  }
  // The body may have exactly the maximum number of frames.
  Frames max = frames({"P", "", "MDPC01", "yolo"});
  for (std::size_t i = 0; i < kMaxBodyFrames; ++i) max.emplace_back();
  CHECK(decode_client_request(std::move(max)).ok());
  // A client reply without the delimiter; an empty one.
  CHECK(decode_client_reply(frames({"MDPC01", "yolo"})).fault() == Fault::MissingDelimiter);
  CHECK(decode_client_reply(frames({""})).fault() == Fault::Empty);
}

TEST_CASE("malformed worker messages are faults") {
  struct Case {
    const char* what;
    Frames msg;
    Fault fault;
  };
  std::vector<Case> cases;
  cases.push_back({"nothing", {}, Fault::Empty});
  cases.push_back({"one empty frame", frames({"W", ""}), Fault::Empty});
  cases.push_back({"no delimiter", frames({"W", "MDPW01", cmd(Command::Heartbeat)}), Fault::MissingDelimiter});
  cases.push_back({"client header", frames({"W", "", "MDPC01", cmd(Command::Heartbeat)}), Fault::WrongProtocol});
  cases.push_back({"no command", frames({"W", "", "MDPW01"}), Fault::MissingFrame});
  cases.push_back({"command 0x00", frames({"W", "", "MDPW01", std::string(1, '\0')}), Fault::UnknownCommand});
  cases.push_back({"command 0x06", frames({"W", "", "MDPW01", "\x06"}), Fault::UnknownCommand});
  cases.push_back({"command of two bytes", frames({"W", "", "MDPW01", "\x01\x01"}), Fault::UnknownCommand});
  cases.push_back({"REQUEST from a worker", frames({"W", "", "MDPW01", cmd(Command::Request), "C", "", "x"}), Fault::UnknownCommand});
  cases.push_back({"READY without service", frames({"W", "", "MDPW01", cmd(Command::Ready)}), Fault::MissingFrame});
  cases.push_back({"READY with two services", frames({"W", "", "MDPW01", cmd(Command::Ready), "a", "b"}), Fault::TooManyFrames});
  cases.push_back({"READY with empty service", frames({"W", "", "MDPW01", cmd(Command::Ready), ""}), Fault::BadService});
  cases.push_back({"REPLY without client", frames({"W", "", "MDPW01", cmd(Command::Reply)}), Fault::MissingFrame});
  cases.push_back({"REPLY without delimiter", frames({"W", "", "MDPW01", cmd(Command::Reply), "C", "x"}), Fault::MissingDelimiter});
  cases.push_back({"REPLY with empty client", frames({"W", "", "MDPW01", cmd(Command::Reply), "", ""}), Fault::MissingFrame});
  cases.push_back({"HEARTBEAT with a body", frames({"W", "", "MDPW01", cmd(Command::Heartbeat), "x"}), Fault::TooManyFrames});
  Frames many = frames({"W", "", "MDPW01", cmd(Command::Reply), "C", ""});
  for (std::size_t i = 0; i < kMaxBodyFrames + 1; ++i) many.emplace_back();
  cases.push_back({"REPLY with too many frames", std::move(many), Fault::TooManyFrames});
  for (auto& c : cases) {
    CAPTURE(c.what);
    auto d = decode_from_worker(std::move(c.msg));
    REQUIRE_FALSE(d.ok());
    CHECK(d.fault() == c.fault);
  }
  // At the worker: an empty message, and a flood of frames.
  CHECK(decode_from_broker(frames({""})).fault() == Fault::Empty);
  Frames flood = frames({"", "MDPW01", cmd(Command::Heartbeat)});
  for (int i = 0; i < 1000; ++i) flood.emplace_back();
  CHECK(decode_from_broker(std::move(flood)).fault() == Fault::TooManyFrames);
  // Commands only a worker may send are faults at the worker.
  CHECK(decode_from_broker(frames({"", "MDPW01", cmd(Command::Ready), "yolo"})).fault() == Fault::UnknownCommand);
  CHECK(decode_from_broker(frames({"", "MDPW01", cmd(Command::Reply), "C", ""})).fault() == Fault::UnknownCommand);
}

TEST_CASE("malformed zyolo envelopes are faults") {
  CHECK(decode_app_request({}).fault() == Fault::BadEnvelope);
  CHECK(decode_app_request(frames({"id", "{}"})).fault() == Fault::BadEnvelope);
  CHECK(decode_app_request(frames({"id", "{}", "p", "extra"})).fault() == Fault::BadEnvelope);
  CHECK(decode_app_request(frames({"", "{}", "p"})).fault() == Fault::BadId);
  CHECK(decode_app_request(frames({"has space", "{}", "p"})).fault() == Fault::BadId);
  CHECK(decode_app_request(frames({std::string(65, 'i'), "{}", "p"})).fault() == Fault::BadId);
  CHECK(decode_app_request(frames({std::string(64, 'i'), "{}", "p"})).ok());
  CHECK(decode_app_reply(frames({"id", "200", "{}"})).fault() == Fault::BadEnvelope);
  CHECK(decode_app_reply(frames({"id", "20", "{}", ""})).fault() == Fault::BadStatus);
  CHECK(decode_app_reply(frames({"id", "2x0", "{}", ""})).fault() == Fault::BadStatus);
  CHECK(decode_app_reply(frames({"id", "2000", "{}", ""})).fault() == Fault::BadStatus);
  CHECK(decode_app_reply(frames({"id\x01", "200", "{}", ""})).fault() == Fault::BadId);
  CHECK(decode_app_reply(frames({"id", "\xb2\xb0\xb0", "{}", ""})).fault() == Fault::BadStatus);
  CHECK(peek_request_id(frames({"c1-2", "", "x"})) == "c1-2");        // a request's shape
  CHECK(peek_request_id(frames({"c1-2", "200", "{}", ""})) == "c1-2");  // a reply's
  CHECK(peek_request_id(frames({"bad id", "", "x"})).empty());
  CHECK(peek_request_id({}).empty());
  // Plain RFC 7 bodies of other shapes carry no id, whatever their first frame says.
  CHECK(peek_request_id(frames({"c1-2"})).empty());
  CHECK(peek_request_id(frames({"c1-2", "x"})).empty());
  CHECK(peek_request_id(frames({"c1-2", "a", "b", "c", "d"})).empty());
}

TEST_CASE("random garbage never crashes a decoder") {
  std::mt19937 rng(12345);
  long ok = 0, faults = 0;
  auto tally = [&](bool decoded) { decoded ? ++ok : ++faults; };
  const std::string_view pieces[] = {"", "MDPC01", "MDPW01", "\x01", "\x02", "\x03", "\x04", "\x05", "yolo", "c1-1", "200"};
  for (int round = 0; round < 20000; ++round) {
    Frames f;
    const int n = static_cast<int>(rng() % 24);
    for (int i = 0; i < n; ++i) {
      if (rng() % 3 == 0) {
        std::string bytes(rng() % 8, '\0');
        for (auto& b : bytes) b = static_cast<char>(rng());
        f.push_back(zmq::message_t(bytes.data(), bytes.size()));
      } else {
        auto p = pieces[rng() % std::size(pieces)];
        f.emplace_back(p.data(), p.size());
      }
    }
    tally(decode_client_request(copy(f)).ok());
    tally(decode_client_reply(copy(f)).ok());
    tally(decode_from_worker(copy(f)).ok());
    tally(decode_from_broker(copy(f)).ok());
    tally(decode_app_request(copy(f)).ok());
    tally(decode_app_reply(copy(f)).ok());
  }
  // No crash (the suite also runs under ASan/UBSan), and the garbage reached both outcomes.
  CHECK(ok > 0);
  CHECK(faults > ok);
}

// Regression (fuzz/fuzz_codec): "040" decoded as status 40, which encode_app_reply writes as "40",
// a reply no decoder accepts. Statuses are 100..999, three digits, no leading zero.
TEST_CASE("a status with a leading zero is a fault; every accepted status round-trips") {
  CHECK(decode_app_reply(frames({"id", "040", "{}", ""})).fault() == Fault::BadStatus);
  CHECK(decode_app_reply(frames({"id", "000", "{}", ""})).fault() == Fault::BadStatus);
  for (int status : {100, 200, 400, 503, 999}) {
    CAPTURE(status);
    auto d = decode_app_reply(encode_app_reply("id", status, "{}"));
    REQUIRE(d.ok());
    CHECK(d->status == status);
  }
}

TEST_CASE("pipe commands round-trip; an unknown one is a fault") {
  auto d = decode_pipe(encode_pipe(PipeCommand::Stats, frames({"{}", "x"})));
  REQUIRE(d.ok());
  CHECK(d->command == PipeCommand::Stats);
  REQUIRE(d->args.size() == 2);
  CHECK(d->args[1].to_string_view() == "x");
  CHECK(decode_pipe(encode_pipe(PipeCommand::Term)).ok());
  CHECK(decode_pipe({}).fault() == Fault::Empty);
  CHECK(decode_pipe(frames({"$BOGUS"})).fault() == Fault::UnknownPipeCommand);
}

TEST_CASE("client reports round-trip; a bad index or a command no client reports is a fault") {
  const ClientRecords records = {{1, 0, 10, 200, 0, {1, 2, 3, 4}}};
  auto d = decode_report(encode_report(255, PipeCommand::Records, args_of(records)));
  REQUIRE(d.ok());
  CHECK(d->client == 255);
  CHECK(d->message.command == PipeCommand::Records);
  auto back = decode_args<ClientRecords>(d->message);
  REQUIRE(back.ok());
  REQUIRE(back->size() == 1);
  CHECK((*back)[0].stage_us[3] == 4);
  for (auto c : {PipeCommand::Detections, PipeCommand::Done, PipeCommand::Stats})
    CHECK(decode_report(encode_report(1, c, frames({"x"}))).ok());
  CHECK(decode_report({}).fault() == Fault::Empty);
  CHECK(decode_report(frames({"7"})).fault() == Fault::Empty);  // an index and no command
  for (const char* index : {"", "x", "-1", "07", "-0", "4294967296", "1e3"}) {
    CAPTURE(index);
    CHECK(decode_report(frames({index, "RECORDS", ""})).fault() == Fault::BadArguments);
  }
  CHECK(decode_report(frames({"4294967295", "DONE", "{}"})).ok());
  CHECK(decode_report(frames({"1", "$BOGUS"})).fault() == Fault::UnknownPipeCommand);
  CHECK(decode_report(encode_report(1, PipeCommand::Error, frames({"died"}))).fault() == Fault::UnknownPipeCommand);
  CHECK(decode_report(encode_report(1, PipeCommand::Term)).fault() == Fault::UnknownPipeCommand);
  // A torn record blob decodes as a report; its arguments are refused by decode_args.
  zmq::message_t blob = pack_records(records);
  Frames torn;
  torn.emplace_back(blob.data(), blob.size() - 1);
  auto t = decode_report(encode_report(2, PipeCommand::Records, std::move(torn)));
  REQUIRE(t.ok());
  CHECK(decode_args<ClientRecords>(t->message).fault() == Fault::BadArguments);
}

TEST_CASE("frames_bytes adds up every frame") {
  CHECK(frames_bytes({}) == 0);
  CHECK(frames_bytes(frames({"", "abc", "de"})) == 5);
}

TEST_CASE("client records pack and unpack; a torn blob is refused") {
  std::vector<ClientRecord> records = {{1, 0, 10, 200, 0, {1, 2, 3, 4}}, {2, 1, 20, 504, 3, {}}};
  auto blob = pack_records(records);
  auto back = unpack_records(blob);
  REQUIRE(back.has_value());
  REQUIRE(back->size() == 2);
  CHECK((*back)[1].status == 504);
  CHECK((*back)[1].retries == 3);
  CHECK((*back)[0].stage_us[3] == 4);
  zmq::message_t torn(blob.data(), blob.size() - 1);
  CHECK_FALSE(unpack_records(torn).has_value());
}
