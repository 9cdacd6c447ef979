// The ZAP handler (ZeroMQ RFC 27): the broker's doorman when CURVE is on. libzmq asks it, over
// the inproc endpoint "inproc://zeromq.zap.01" of the broker's context, whether each peer that
// completed a CURVE handshake with a broker socket may in. It answers 200 for a public key on the
// allow-list and 400 for any other, counting both; on a broker pair's state channel (ZAP domain
// kZapDomainHa) it lets in only the pair's own key, the other broker. A refused peer's connection
// is closed by libzmq before any message of it reaches the broker.
//
// The handler must be bound before the broker's sockets are (the supervisor starts it first and
// waits for its $READY): a CURVE socket whose context has no ZAP handler lets everyone in.
#include <set>
#include <string>

#include "src/wire/actor.hpp"
#include "src/wire/sockopts.hpp"
#include "src/wire/stats.hpp"
#include "src/wire/zap.hpp"
#include "threads/actors.hpp"

namespace zyolo {
namespace {

constexpr const char* kZapEndpoint = "inproc://zeromq.zap.01";
constexpr std::size_t kRefusedKeysKept = 16;  // distinct refused keys named in the stats

class ZapHandler {
 public:
  ZapHandler(zmq::context_t& ctx, zmq::socket_ref pipe, const std::vector<std::string>& allowed,
             const std::string& pair_key)
      : pipe_(pipe),
        socket_(ctx, zmq::socket_type::rep),
        allowed_(allowed.begin(), allowed.end()),
        pair_key_(pair_key) {
    socket_.set(zmq::sockopt::linger, 0);
    socket_.bind(kZapEndpoint);
  }

  void run() {
    while (true) {
      zmq::pollitem_t items[] = {{pipe_.handle(), 0, ZMQ_POLLIN, 0}, {socket_.handle(), 0, ZMQ_POLLIN, 0}};
      zmq::poll(items, 2);
      if (items[0].revents & ZMQ_POLLIN) {
        auto m = recv_pipe(pipe_);
        if (!m || m->command == PipeCommand::Term) return;
        if (m->command == PipeCommand::Stats) send_pipe(pipe_, PipeCommand::Stats, args_of(stats()));
      }
      if (items[1].revents & ZMQ_POLLIN) on_request();
    }
  }

 private:
  // A ZAP request: 200 for a CURVE key on the allow-list (on the pair's state channel: the pair's
  // own key), 400 for anything else.
  void on_request() {
    auto frames = recv_frames(socket_, zmq::recv_flags::dontwait);
    if (!frames) return;
    std::string request_id;
    auto request = decode_zap_request(*frames, &request_id);
    std::string status = "400", text = "not a ZAP/1.0 CURVE request", user;
    if (request && allowed(*request)) {
      status = "200", text = "OK", user = request->public_key;
      ++accepted_;
    } else {
      if (request) {
        text = "public key not on the allow-list";
        if (refused_keys_.size() < kRefusedKeysKept) refused_keys_.insert(request->public_key);
      }
      ++refused_;
    }
    Frames reply = encode_zap_reply(request_id, status, text, user);
    send_frames(socket_, reply);
  }

  bool allowed(const ZapRequest& r) const {
    if (r.domain == kZapDomainHa) return !pair_key_.empty() && r.public_key == pair_key_;
    return allowed_.contains(r.public_key);
  }

  ZapStats stats() const {
    return {static_cast<long>(allowed_.size()), accepted_, refused_,
            {refused_keys_.begin(), refused_keys_.end()}};
  }

  zmq::socket_ref pipe_;
  zmq::socket_t socket_;
  std::set<std::string> allowed_, refused_keys_;
  std::string pair_key_;
  long accepted_ = 0, refused_ = 0;
};

}  // namespace

void zap_handler(zmq::context_t& ctx, zmq::socket_ref pipe, const std::vector<std::string>& allowed,
                 const std::string& pair_key) {
  ZapHandler handler(ctx, pipe, allowed, pair_key);
  signal_ready(pipe);
  handler.run();
}

}  // namespace zyolo
