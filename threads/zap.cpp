// The ZAP handler (ZeroMQ RFC 27): the broker's doorman when CURVE is on. libzmq asks it, over
// the inproc endpoint "inproc://zeromq.zap.01" of the broker's context, whether each peer that
// completed a CURVE handshake with a broker socket may in. It answers 200 for a public key on the
// allow-list and 400 for any other, counting both. A refused peer's connection is closed by
// libzmq before any message of it reaches the broker.
//
// The handler must be bound before the broker's sockets are (the supervisor starts it first and
// waits for its $READY): a CURVE socket whose context has no ZAP handler lets everyone in.
#include <zmq.h>

#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "actor.hpp"
#include "actors.hpp"
#include "protocol.hpp"

namespace zyolo {
namespace {

constexpr const char* kZapEndpoint = "inproc://zeromq.zap.01";
constexpr std::size_t kRefusedKeysKept = 16;  // distinct refused keys named in the stats

class ZapHandler {
 public:
  ZapHandler(zmq::context_t& ctx, zmq::socket_ref pipe, const std::vector<std::string>& allowed)
      : pipe_(pipe), socket_(ctx, zmq::socket_type::rep), allowed_(allowed.begin(), allowed.end()) {
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
        if (m->command == PipeCommand::Stats) send_pipe(pipe_, PipeCommand::Stats, text_frames({stats().dump()}));
      }
      if (items[1].revents & ZMQ_POLLIN) on_request();
    }
  }

 private:
  // A ZAP request: version, request id, domain, address, routing id, mechanism, credentials.
  void on_request() {
    auto request = recv_frames(socket_, zmq::recv_flags::dontwait);
    if (!request) return;
    auto& f = *request;
    std::string id = f.size() > 1 ? f[1].to_string() : "";
    std::string status = "400", text = "not a ZAP/1.0 CURVE request", user;
    if (f.size() >= 7 && f[0].to_string_view() == "1.0" && f[5].to_string_view() == "CURVE" &&
        f[6].size() == 32) {
      char z85[41];
      zmq_z85_encode(z85, static_cast<const uint8_t*>(f[6].data()), 32);
      if (allowed_.contains(z85)) {
        status = "200", text = "OK", user = z85;
        ++accepted_;
      } else {
        text = "public key not on the allow-list";
        if (refused_keys_.size() < kRefusedKeysKept) refused_keys_.insert(z85);
      }
    }
    if (status != "200") ++refused_;
    Frames reply = text_frames({"1.0", id, status, text, user, ""});
    send_frames(socket_, reply);
  }

  nlohmann::json stats() const {
    return {{"allowed_keys", allowed_.size()}, {"accepted", accepted_}, {"refused", refused_},
            {"refused_keys", refused_keys_}};
  }

  zmq::socket_ref pipe_;
  zmq::socket_t socket_;
  std::set<std::string> allowed_, refused_keys_;
  long accepted_ = 0, refused_ = 0;
};

}  // namespace

void zap_handler(zmq::context_t& ctx, zmq::socket_ref pipe, const std::vector<std::string>& allowed) {
  ZapHandler handler(ctx, pipe, allowed);
  signal_ready(pipe);
  handler.run();
}

}  // namespace zyolo
