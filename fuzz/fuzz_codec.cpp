// libFuzzer target for the codec (src/wire/: protocol, pipe, stats, zap, monitor events, and the
// metrics endpoint's HTTP request parser): every
// decoder on every input, and every message a decoder accepts must encode back to exactly the
// frames it came from (typed pipe arguments and stats, whose text a sender may write in more than
// one way: encoding what was decoded, then decoding and encoding that again, gives the same
// frames). A decoder that crashes, trips ASan/UBSan, or accepts a message it cannot reproduce is
// a crash. scripts/fuzz builds and runs it.
//
// Input -> frames: a sequence of [length][bytes]. The length is one byte 0..254, or 0xFF followed
// by two bytes little-endian (up to 65535, for long service names and ids); a frame cut short by
// the end of the input keeps what there is. Frames past the input's end: none.
//
// With ZYOLO_FUZZ_SEEDS=DIR in the environment the target writes a seed corpus of valid messages
// (made by the real encoders, in the format above) into DIR and exits.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "src/wire/http.hpp"
#include "src/wire/monitor.hpp"
#include "src/wire/pipe.hpp"
#include "src/wire/protocol.hpp"
#include "src/wire/stats.hpp"
#include "src/wire/zap.hpp"

using namespace zyolo;

namespace {

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "fuzz_codec: %s\n", what);
  std::abort();
}

void check(bool ok, const char* what) {
  if (!ok) fail(what);
}

Frames split(const uint8_t* data, std::size_t size) {
  Frames frames;
  std::size_t i = 0;
  while (i < size) {
    std::size_t n = data[i++];
    if (n == 0xFF) {
      n = 0;
      if (i < size) n = data[i++];
      if (i < size) n |= static_cast<std::size_t>(data[i++]) << 8;
    }
    n = std::min(n, size - i);
    frames.emplace_back(data + i, n);
    i += n;
  }
  return frames;
}

std::string join(const Frames& frames) {
  std::string out;
  for (const auto& f : frames) {
    if (f.size() < 0xFF) {
      out += static_cast<char>(f.size());
    } else {
      out += '\xFF';
      out += static_cast<char>(f.size() & 0xFF);
      out += static_cast<char>((f.size() >> 8) & 0xFF);
    }
    out.append(static_cast<const char*>(f.data()), f.size());
  }
  return out;
}

Frames copy(const Frames& frames) {
  Frames out;
  for (const auto& f : frames) out.emplace_back(f.data(), f.size());
  return out;
}

Frames tail(Frames frames) {  // without the routing id, as a DEALER sees what a ROUTER sent
  frames.erase(frames.begin());
  return frames;
}

bool same(const Frames& a, const Frames& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (a[i].to_string_view() != b[i].to_string_view()) return false;
  return true;
}

// A decoded worker message, encoded again as its sender would (with `peer` in front or not).
Frames reencode(WorkerMessage& m, bool with_peer) {
  const zmq::message_t dummy(std::string_view("P"));
  const zmq::message_t& peer = with_peer ? m.peer : dummy;
  Frames out;
  switch (m.command) {
    case Command::Ready: out = encode_worker_ready(m.service); break;
    case Command::Reply: out = encode_worker_reply(std::move(m.client), std::move(m.body)); break;
    case Command::Request:
      out = tail(encode_broker_request(peer, std::move(m.client), std::move(m.body)));
      break;
    case Command::Heartbeat:
    case Command::Disconnect: out = encode_worker_command(m.command); break;
  }
  if (!with_peer) return out;
  Frames full;
  full.emplace_back(peer.data(), peer.size());
  for (auto& f : out) full.push_back(std::move(f));
  return full;
}

// Every typed argument decoder on a pipe message: what one accepts is encoded, decoded and
// encoded again, and the two encodings must be the same frames.
template <class T>
void typed(const PipeMessage& m, const char* what) {
  auto v = decode_args<T>(m);
  if (!v) return;
  PipeMessage again{m.command, args_of(*v)};
  auto w = decode_args<T>(again);
  if (!w) fail(what);
  check(same(args_of(*w), again.args), what);
}

void all_typed(const PipeMessage& m) {
  typed<ErrorText>(m, "ErrorText is not stable");
  typed<Freeze>(m, "Freeze is not stable");
  typed<CpuClock>(m, "CpuClock is not stable");
  typed<LinkRule>(m, "LinkRule is not stable");
  typed<ClientRecords>(m, "ClientRecords is not stable");
  typed<DetectionLines>(m, "DetectionLines is not stable");
  typed<BrokerStats>(m, "BrokerStats is not stable");
  typed<WorkerStats>(m, "WorkerStats is not stable");
  typed<ClientTotals>(m, "ClientTotals is not stable");
  typed<ControllerStats>(m, "ControllerStats is not stable");
  typed<LinkStats>(m, "LinkStats is not stable");
  typed<ZapStats>(m, "ZapStats is not stable");
  typed<Demand>(m, "Demand is not stable");
  typed<ScaleDecision>(m, "ScaleDecision is not stable");
  typed<Exposed>(m, "Exposed is not stable");
  typed<HaNote>(m, "HaNote is not stable");
  typed<MetricsServerStats>(m, "MetricsServerStats is not stable");
}

// The metrics endpoint's request parser on one frame's bytes: what it accepts lies within them.
void http(const zmq::message_t& frame) {
  const std::string_view bytes = frame.to_string_view();
  for (const std::size_t cap : {std::size_t{64}, std::size_t{8192}}) {
    const HttpParsed p = parse_http_request(bytes, cap);
    if (p.status == HttpParse::Complete) {
      check(p.request.length >= 4 && p.request.length <= bytes.size() && p.request.length <= cap, "http: length");
      check(!p.request.method.empty() && p.request.path.starts_with('/'), "http: method or path");
      check(bytes.substr(p.request.length - 4, 4) == "\r\n\r\n", "http: the head's end");
    }
    if (p.status == HttpParse::TooLarge) check(bytes.size() >= cap, "http: too large below the cap");
    if (p.status == HttpParse::Malformed) check(!p.why.empty(), "http: malformed says why");
  }
}

void write_seeds(const char* dir) {
  const zmq::message_t peer(std::string_view("W1"));
  const zmq::message_t client(std::string_view("C1"));
  auto img = [] { return zmq::message_t(std::string_view("\xff\xd8\xff\xe0 jpeg")); };
  std::vector<Frames> seeds;
  seeds.push_back(encode_client_reply(client, "yolo", encode_app_request("c0-17", "", img())));
  seeds.push_back(encode_client_request("yolo", encode_app_request("c0-17", "{}", img())));
  seeds.push_back(encode_client_request("yolo", encode_app_reply("c0-17", 200, R"({"worker":"w0"})", img())));
  seeds.push_back(encode_client_request("mmi.service", text_frames({"yolo"})));
  Frames ready = encode_worker_ready("yolo");
  ready.insert(ready.begin(), zmq::message_t(std::string_view("W1")));
  seeds.push_back(std::move(ready));
  Frames reply = encode_worker_reply(zmq::message_t(std::string_view("C1")),
                                     encode_app_reply("c0-17", 400, R"({"error":"x"})"));
  reply.insert(reply.begin(), zmq::message_t(std::string_view("W1")));
  seeds.push_back(std::move(reply));
  seeds.push_back(tail(encode_broker_request(peer, zmq::message_t(std::string_view("C1")),
                                             encode_app_request("c1-2", "", img()))));
  seeds.push_back(tail(encode_broker_command(peer, Command::Heartbeat)));
  seeds.push_back(tail(encode_broker_command(peer, Command::Disconnect)));
  seeds.push_back(encode_app_reply("c0-1", 503, R"({"error":"queue full"})"));
  seeds.push_back(encode_pipe(PipeCommand::Stats, text_frames({R"({"workers":2})"})));
  seeds.push_back(encode_pipe(PipeCommand::Term));
  seeds.push_back(single_frame(pack_records({{1, 2, 3, 200, 0, {1, 2, 3, 4}}})));
  // The typed pipe arguments and stats, as the actors send them.
  BrokerStats broker;
  broker.requests = 5;
  broker.services["yolo"].workers = 2;
  broker.services["yolo"].queue = 1;
  broker.services["yolo"].replies["200"] = 4;
  broker.services["yolo"].queue_wait = Histogram({0.001, 0.01});
  broker.services["yolo"].queue_wait.observe(0.005);
  broker.faults["empty message"] = 1;
  broker.queue_waits_us = {10, 20};
  seeds.push_back(encode_pipe(PipeCommand::Stats, args_of(broker)));
  BrokerStats proxy;
  proxy.proxy = ProxyTraffic{};
  seeds.push_back(encode_pipe(PipeCommand::Stats, args_of(proxy)));
  seeds.push_back(encode_pipe(PipeCommand::Done, args_of(WorkerStats{"w1", "echo", 3, 0, 0, 1, 0, 0, 0, true, {}})));
  WorkerStats yolo{"w2", "yolo", 1, 0, 0, 0, 0, 0, 0, false, std::vector<Histogram>(4, Histogram({0.01, 0.1}))};
  yolo.stages[2].observe(0.05);
  seeds.push_back(encode_pipe(PipeCommand::Stats, args_of(yolo)));
  seeds.push_back(encode_pipe(PipeCommand::Expose, args_of(Exposed{"# TYPE x counter\nx 1\n", "", "starting"})));
  seeds.push_back(encode_pipe(PipeCommand::Stats, args_of(MetricsServerStats{1, 2, {{"200", 3}}, {{"idle", 1}}})));
  seeds.push_back(text_frames({"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"}));
  seeds.push_back(text_frames({"HEAD /readyz?x=1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.1\r\n\r\n"}));
  seeds.push_back(encode_pipe(PipeCommand::Done, args_of(ClientTotals{"c0", "echo", 4, 4, 0, 0, 0, 0, 1})));
  seeds.push_back(encode_pipe(PipeCommand::Stats, args_of(ControllerStats{1, 2, 3, 0})));
  seeds.push_back(encode_pipe(PipeCommand::Stats, args_of(LinkStats{1, 2, 3, 4, 5, 6})));
  seeds.push_back(encode_pipe(PipeCommand::Stats, args_of(ZapStats{1, 2, 1, {"rq:rq"}})));
  Demand demand{1000, {}};
  demand.services["yolo"] = {1.5, 2, 1, 1, 2, 1, 3, 10, 9, 0.5, 12.0};
  seeds.push_back(encode_pipe(PipeCommand::Demand, args_of(demand)));
  seeds.push_back(encode_pipe(PipeCommand::Scale, args_of(ScaleDecision{"yolo", 1.5, 2, 1, 2, 1, 0, 3, 0, 0.5, 12})));
  seeds.push_back(encode_pipe(PipeCommand::Error, args_of(ErrorText{"no model"})));
  seeds.push_back(encode_pipe(PipeCommand::Ha, args_of(HaNote{HaNote::Kind::Transition, "BACKUP", "ACTIVE",
                                                              "peer silent 0.5 s, a client came"})));
  seeds.push_back(encode_pipe(PipeCommand::Freeze, args_of(Freeze{std::chrono::milliseconds(1500)})));
  seeds.push_back(encode_pipe(PipeCommand::Stats, args_of(CpuClock{-12345})));
  seeds.push_back(encode_pipe(PipeCommand::Rule, args_of(LinkRule{*parse_nodes("w0,c1"), LinkMode::Drop, 0.25,
                                                                  std::chrono::milliseconds(2000)})));
  seeds.push_back(encode_pipe(PipeCommand::Detections, args_of(DetectionLines{"{\"id\":\"c0-1\"}\n"})));
  // Client reports, as clients send them on the report socket.
  seeds.push_back(encode_report(3, PipeCommand::Records, args_of(ClientRecords{{1, 2, 3, 200, 0, {1, 2, 3, 4}}})));
  seeds.push_back(encode_report(0, PipeCommand::Done, args_of(ClientTotals{"c0", "echo", 4, 4, 0, 0, 0, 0, 1})));
  // A ZAP/1.0 request as libzmq sends it for CURVE.
  seeds.push_back(text_frames({"1.0", "1", "global", "127.0.0.1", "", "CURVE", std::string(32, 'k')}));
  for (std::size_t i = 0; i < seeds.size(); ++i) {
    std::ofstream out(std::string(dir) + "/seed-" + std::to_string(i), std::ios::binary);
    out << join(seeds[i]);
    check(out.good(), "cannot write a seed");
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  if (const char* dir = std::getenv("ZYOLO_FUZZ_SEEDS")) {
    write_seeds(dir);
    std::exit(0);
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  const Frames in = split(data, size);
  std::size_t bytes = 0;
  for (const auto& f : in) bytes += f.size();
  check(frames_bytes(in) == bytes, "frames_bytes");

  if (auto m = decode_client_request(copy(in))) {
    check(!m->service.empty() && m->service.size() <= kMaxServiceBytes, "client request: service");
    check(m->body.size() <= kMaxBodyFrames, "client request: body frames");
    check(same(encode_client_reply(m->sender, m->service, std::move(m->body)), in),
          "client request does not round-trip");
  }
  if (auto m = decode_client_reply(copy(in))) {
    check(m->body.size() <= kMaxBodyFrames, "client reply: body frames");
    check(same(encode_client_request(m->service, std::move(m->body)), in),
          "client reply does not round-trip");
  }
  if (auto m = decode_from_worker(copy(in))) {
    check(m->command != Command::Request, "a worker sent REQUEST");
    check(same(reencode(m.value(), true), in), "worker -> broker does not round-trip");
  }
  if (auto m = decode_from_broker(copy(in))) {
    check(m->command != Command::Ready && m->command != Command::Reply, "a broker sent READY/REPLY");
    check(same(reencode(m.value(), false), in), "broker -> worker does not round-trip");
  }
  const std::string peeked(peek_request_id(in));
  if (auto r = decode_app_request(copy(in))) {
    check(peeked == r->id, "peek_request_id differs from the request's id");
    check(same(encode_app_request(r->id, r->options, std::move(r->payload)), in),
          "app request does not round-trip");
  }
  if (auto r = decode_app_reply(copy(in))) {
    check(peeked == r->id, "peek_request_id differs from the reply's id");
    check(same(encode_app_reply(r->id, r->status, r->json, std::move(r->payload)), in),
          "app reply does not round-trip");
  }
  if (!peeked.empty()) check(in.at(0).to_string_view() == peeked, "peek_request_id invented an id");
  for (const auto& f : in) http(f);
  if (auto p = decode_pipe(copy(in))) {
    all_typed(*p);
    check(same(encode_pipe(p->command, std::move(p->args)), in), "pipe command does not round-trip");
  }
  if (auto r = decode_report(copy(in))) {
    all_typed(r->message);
    check(same(encode_report(r->client, r->message.command, std::move(r->message.args)), in),
          "client report does not round-trip");
  }
  std::string zap_id;
  if (auto z = decode_zap_request(in, &zap_id)) {
    check(in.size() >= 2 && zap_id == in[1].to_string_view(), "ZAP request id");
    const Frames reply = encode_zap_reply(zap_id, "200", "OK", "user");
    check(reply.size() == 6 && reply[1].to_string_view() == zap_id, "ZAP reply");
  }
  if (auto s = decode_proxy_statistics(in)) (void)s;
  if (auto e = decode_socket_event(in)) check(in.size() == 2 && in[0].size() == 6, "socket event");
  for (const auto& f : in) {
    auto records = unpack_records(f);
    check(records.has_value() == (f.size() % sizeof(ClientRecord) == 0), "unpack_records: size");
    if (records) check(pack_records(*records).to_string_view() == f.to_string_view(),
                       "records do not round-trip");
  }
  return 0;
}
