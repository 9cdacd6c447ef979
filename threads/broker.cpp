// The broker: MDP/0.1 (RFC 7) between a ROUTER frontend for clients and a ROUTER backend for
// workers, in the shape of the guide's mdbroker, plus bounded queues and re-queue on expiry.
//
// State machine per worker: (unknown) --READY--> idle --REQUEST--> busy --REPLY--> idle ...
// With broker.worker_credit C > 1 a worker may hold up to C requests (busy with 1..C): READY puts
// C tokens in its service's ready queue, each REQUEST takes one, each REPLY gives one back, so
// the queue is O(1) and least recently used first; C = 1 is the guide's strict LRU, what any
// RFC 7 worker expects. The requests a worker holds are a FIFO, matched to REPLYs by request id.
// Any message from an unknown worker but READY is answered with DISCONNECT (that is how workers
// learn that the broker restarted). READY from a known worker is a protocol error: DISCONNECT.
// A worker silent for liveness x heartbeat is expired; each request it held is re-queued once.
// A worker that heartbeats while holding a request for over two intervals lost it in transit:
// it is re-queued the same way (see on_worker_heartbeat).
// A worker leaves by DISCONNECT. One that holds requests (REQUESTs crossed its DISCONNECT on the
// wire) is routed nothing more, its REPLYs are delivered, and then it is forgotten; either way the
// broker answers DISCONNECT, and the worker exits on that answer (see worker.cpp). So a worker
// retired by the controller or a scenario never makes a request wait for re-queueing.
//
// Demand: every autoscale.interval_ms the broker publishes [DEMAND][JSON] on its control PUB
// socket, per service: the mean number of requests in the system (queued + held by workers)
// over the interval, clients active in the last client_window_ms, queue, workers, and the mean
// queue wait and service time of the requests dispatched and answered in the interval.
//
// A full queue is not a dead peer: a worker whose queue is at the high-water mark (EAGAIN, it has
// not read for a while) stays registered and idle, the request stays first in line, and the next
// idle worker is tried (counted as full_pipes); only EHOSTUNREACH (the peer is gone) removes it.
// Each wake-up reads every socket until nothing waits (a budget each), replies before requests.
//
// The hot path allocates nothing once the broker has seen its busiest moment: a message is
// decoded in place (view_client_request, view_from_worker) in one reused Frames; a request's
// frames are moved into a reused slot and forwarded as they are (shared with the worker, not
// copied: the broker keeps them to re-queue); queues are rings of slot numbers, a worker's credit
// a token of slot and epoch, and the de-duplication set draws its nodes from a recycling pool.
// bench/README.md says how that was measured.
//
// A client's Lazy Pirate retry of a request that is still queued or held (same routing id, same
// request id) is dropped: the answer already on its way reaches the client's new socket, since
// the frontend hands a routing id over to the newest connection.
//
// Bad input is dropped or answered and counted, never fatal. STATS names each kind:
//   faults{<fault_name>}   a message that does not decode (empty message, wrong protocol header,
//                          unknown command, too many frames, ...), and "oversized message": more
//                          bytes in all than broker.max_message_bytes. (Over tcp/ipc, libzmq's
//                          ZMQ_MAXMSGSIZE also drops the connection of a peer that sends a single
//                          frame over the limit before the broker sees it: not counted here.)
//   unknown_worker         HEARTBEAT, REPLY (any command but READY) from an unregistered worker;
//                          by command in unknown_worker_commands{READY..DISCONNECT}
//   protocol_errors        valid messages invalid in the worker's state; by kind in
//                          protocol_errors_by_kind{"READY twice", "REPLY not asked for",
//                          "READY for mmi.*"}
//
// A broker pair (ha.role set, Binary Star; src/wire/binary_star.hpp has the state machine): the
// broker also binds a PUB on ha.bind, where it publishes its state every ha.heartbeat_ms, and
// connects a SUB to ha.peer, where it hears the other one's. Only an ACTIVE broker serves. One
// that is not drops each client request (counted as ha_dropped; the client's retry finds the
// active one), unless that request is the vote that makes it ACTIVE (its peer silent for
// heartbeat x missed): then it serves it. It dispatches nothing while not ACTIVE, and a broker
// that leaves ACTIVE (the backup of two actives yields) gives up what it had queued. Workers stay
// registered, but a PASSIVE broker whose peer is alive (heard within heartbeat x missed) sends
// them no heartbeat: a worker given both brokers (endpoints "A,B") hears silence and moves on to
// the next, the active one, instead of idling where nothing is dispatched (a worker that lost the
// active broker, or the workers of a backup that yielded). While the peer is silent, a failover
// may come, and the workers are kept with heartbeats. Each state change is a line on stderr with
// its reason and is counted in STATS (ha_state, ha_transitions, ha_anomalies, ha_peer_lost,
// ha_withheld_heartbeats; ha_peer_up says whether the peer is heard now); the line is the
// parent's to print: the broker sends it an HA note on its pipe (src/wire/pipe.hpp).
// With ha.role unset nothing of this exists: the data path is one untaken branch.
#include <fmt/format.h>

#include <cassert>
#include <chrono>
#include <ctime>
#include <deque>
#include <map>
#include <memory_resource>
#include <optional>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "src/wire/actor.hpp"
#include "src/wire/binary_star.hpp"
#include "src/wire/protocol.hpp"
#include "src/wire/sockopts.hpp"
#include "src/wire/stats.hpp"
#include "threads/actors.hpp"

namespace zyolo {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr int kDrainBudget = 64;  // messages read from one socket per wake-up, at most

// What became of a message sent to a ROUTER peer.
enum class Routed { Sent, Full, Gone };  // Full: its queue is at the high-water mark (EAGAIN)

// CPU time the calling thread has used, in microseconds. STATS carries the broker's own as
// cpu_us (its thread asks in stats()), so a benchmark can divide it by the requests it routed.
long thread_cpu_us() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<long>(ts.tv_sec) * 1'000'000L + ts.tv_nsec / 1000;
}

// A first-in first-out queue in one ring of slots that grows by doubling and never shrinks: once
// it has grown to the most it held, pushing and popping at either end allocates nothing (a
// std::deque allocates a block every 128 elements as it moves along).
template <class T>
class Ring {
 public:
  bool empty() const { return size_ == 0; }
  std::size_t size() const { return size_; }
  T& front() { return slots_[head_]; }
  T& operator[](std::size_t i) { return slots_[(head_ + i) & (slots_.size() - 1)]; }
  void push_back(T v) {
    grow();
    (*this)[size_++] = v;
  }
  void push_front(T v) {
    grow();
    head_ = (head_ + slots_.size() - 1) & (slots_.size() - 1);
    ++size_;
    front() = v;
  }
  void pop_front() {
    assert(size_ > 0);
    head_ = (head_ + 1) & (slots_.size() - 1);
    --size_;
  }

 private:
  void grow() {
    if (size_ < slots_.size()) return;
    std::vector<T> bigger(std::max<std::size_t>(16, 2 * slots_.size()));
    for (std::size_t i = 0; i < size_; ++i) bigger[i] = (*this)[i];
    slots_.swap(bigger);
    head_ = 0;
  }
  std::vector<T> slots_;  // a power of two of them
  std::size_t head_ = 0, size_ = 0;
};

// Hash and equality for string keys looked up by std::string_view, without making a string.
struct TextHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

// A request the broker holds, queued or handed to a worker. Requests live in a pool of slots
// (Broker::requests_), reused: a slot keeps the capacity of its body and key, so once the pool has
// grown to the most requests held at once, taking one in allocates nothing.
struct Request {
  zmq::message_t client;  // the client's routing id
  Frames body;            // the frames received, forwarded as they are (shared, not copied)
  std::string key;        // client routing id + '\0' + request id; empty when the body has no id
  Clock::time_point queued_at, dispatched_at;
  int requeues = 0;
};
using RequestSlot = uint32_t;

struct Service;

struct WorkerEntry {
  zmq::message_t address;  // routing id on the backend
  Service* service = nullptr;
  long epoch = 0;          // when it registered (broker-wide count, from 1); 0: the slot is free.
                           // Tells its tokens from those of a predecessor in the same slot
  Clock::time_point expiry;
  std::vector<RequestSlot> held;  // the requests it was handed and has not answered, oldest first
  bool leaving = false;           // it said DISCONNECT while holding requests
};
using WorkerSlot = uint32_t;

// A worker's credit for one more request: READY gives broker.worker_credit of them, each REPLY
// one back. Tokens of a worker that is gone stay in the queue and are skipped when they come up.
struct Token {
  WorkerSlot worker;
  long epoch;
};

// What the broker measures of a service's demand between two DEMAND messages.
struct DemandMeter {
  long outstanding = 0;             // requests queued or held by a worker, now
  double area = 0;                  // integral of outstanding over time since the last DEMAND, s
  Clock::time_point changed_at = Clock::now();
  long arrivals = 0, replies = 0;   // in the interval
  double wait_s = 0, service_s = 0; // sums over the requests dispatched / answered
  long waits = 0;
  // routing id -> last request
  std::unordered_map<std::string, Clock::time_point, TextHash, std::equal_to<>> clients;

  void change(long delta, Clock::time_point now = Clock::now()) {
    area += static_cast<double>(outstanding) * std::chrono::duration<double>(now - changed_at).count();
    changed_at = now;
    outstanding += delta;
  }

  // A request from `client` came at `now` (a client seen before costs no allocation).
  void saw(std::string_view client, Clock::time_point now) {
    if (auto it = clients.find(client); it != clients.end())
      it->second = now;
    else
      clients.emplace(std::string(client), now);
  }
};

// A service's counters for STATS (and the metrics): cumulative since the broker started.
struct ServiceCounters {
  long requests = 0, rejected = 0;
  long replies[std::size(kReplyStatuses)] = {};  // by status, as kReplyStatuses names them
  Histogram queue_wait;                           // seconds
};

struct Service {
  std::string name;
  Ring<RequestSlot> requests;
  Ring<Token> ready;  // the workers' credit, least recently used first
  int workers = 0;
  DemandMeter demand;
  ServiceCounters n;
};

// The broker's side of a pair: its state machine and the two sockets to its peer.
struct Ha {
  BinaryStar fsm;
  zmq::socket_t pub, sub;  // PUB bound on ha.bind (our state), SUB connected to ha.peer (theirs)
  std::string pub_endpoint, peer_endpoint;
  milliseconds interval;   // ha.heartbeat_ms
  Clock::time_point publish_at;

  Ha(zmq::context_t& ctx, const Config& config, Clock::time_point now)
      : fsm(config.ha.role == "primary" ? HaRole::Primary : HaRole::Backup,
            milliseconds(config.ha.heartbeat_ms), config.ha.missed, now),
        pub(ctx, zmq::socket_type::pub),
        sub(ctx, zmq::socket_type::sub),
        interval(config.ha.heartbeat_ms),
        publish_at(now) {
    // Linger, high-water marks, reconnect intervals, and CURVE when it is on: the two brokers of
    // a pair hold one key pair (their clients and workers know one broker key), so the SUB's
    // server is known by this broker's own public key, and the PUB lets in (ZAP domain
    // kZapDomainHa, threads/zap.cpp) only a peer with that same key.
    apply_socket_options(pub, config, Side::Binds);
    if (config.curve.enabled()) pub.set(zmq::sockopt::zap_domain, kZapDomainHa);
    Config pair = config;
    pair.curve.server_public_key = config.curve.public_key;
    apply_socket_options(sub, pair, Side::Connects);
    // The peer is retried at least every heartbeat, without back-off: a primary started before
    // its backup must hear it before its expiry passes, or it would take a client alone.
    sub.set(zmq::sockopt::reconnect_ivl,
            std::min(config.sockets.reconnect_ivl_ms, config.ha.heartbeat_ms));
    sub.set(zmq::sockopt::reconnect_ivl_max, 0);
    sub.set(zmq::sockopt::subscribe, "");
    pub.bind(config.ha.bind);
    pub_endpoint = pub.get(zmq::sockopt::last_endpoint);
    peer_endpoint = config.ha.peer;
    sub.connect(peer_endpoint);
  }
};

class Broker {
 public:
  Broker(zmq::context_t& ctx, zmq::socket_ref pipe, const Config& config)
      : pipe_(pipe),
        frontend_(ctx, zmq::socket_type::router),
        backend_(ctx, zmq::socket_type::router),
        control_(ctx, zmq::socket_type::pub),
        heartbeat_(config.broker.heartbeat_ms),
        expiry_(config.broker.silence_ms()),
        max_queue_(static_cast<std::size_t>(config.broker.max_queue)),
        max_bytes_(static_cast<std::size_t>(config.broker.max_message_bytes)),
        credit_(config.broker.worker_credit),
        demand_interval_(config.autoscale.interval_ms),
        client_window_(config.autoscale.client_window_ms),
        bounds_(config.metrics.bounds) {
    for (auto* s : {&frontend_, &backend_, &control_}) apply_socket_options(*s, config, Side::Binds);
    for (auto* s : {&frontend_, &backend_})
      s->set(zmq::sockopt::router_mandatory, true);  // a vanished peer is an error we count
    frontend_.set(zmq::sockopt::router_handover, true);  // a retrying client keeps its routing id
    frontend_.bind(config.frontend());
    backend_.bind(config.backend());
    control_.bind(config.control());
    frontend_endpoint_ = frontend_.get(zmq::sockopt::last_endpoint);
    backend_endpoint_ = backend_.get(zmq::sockopt::last_endpoint);
    control_endpoint_ = control_.get(zmq::sockopt::last_endpoint);
    pending_.reserve(std::min<std::size_t>(2 * max_queue_, 1 << 16));  // grows past that if it must
    if (config.ha.enabled()) ha_.emplace(ctx, config, Clock::now());
  }

  // Unbinds at once (closing alone is asynchronous), so a restarted broker can bind again.
  ~Broker() {
    try {
      frontend_.unbind(frontend_endpoint_);
      backend_.unbind(backend_endpoint_);
      control_.unbind(control_endpoint_);
      if (ha_) ha_->pub.unbind(ha_->pub_endpoint);
    } catch (const zmq::error_t&) {
    }
  }

  // The poll loop: until $TERM, or until the context is terminated (zmq::error_t ETERM).
  void run() {
    heartbeat_at_ = Clock::now() + heartbeat_;
    demand_at_ = demand_from_ = Clock::now();
    demand_at_ += demand_interval_;
    while (!terminated_) {
      zmq::pollitem_t items[] = {{pipe_.handle(), 0, ZMQ_POLLIN, 0},
                                 {frontend_.handle(), 0, ZMQ_POLLIN, 0},
                                 {backend_.handle(), 0, ZMQ_POLLIN, 0},
                                 {ha_ ? ha_->sub.handle() : nullptr, 0, ZMQ_POLLIN, 0}};
      auto next = std::min(heartbeat_at_, demand_at_);
      if (ha_) next = std::min(next, ha_->publish_at);
      auto wait = std::chrono::duration_cast<milliseconds>(next - Clock::now());
      zmq::poll(items, ha_ ? 4 : 3, std::max(wait, milliseconds(0)));
      if (items[0].revents & ZMQ_POLLIN) on_pipe();
      if (ha_ && (items[3].revents & ZMQ_POLLIN)) on_peer();  // before clients: their vote needs it
      // Everything waiting is read before the next poll (each socket up to a budget, so that
      // neither side nor the pipe waits long): replies first, they free workers.
      if (items[2].revents & ZMQ_POLLIN) drain(backend_, &Broker::on_backend);
      if (items[1].revents & ZMQ_POLLIN) drain(frontend_, &Broker::on_frontend);
      if (Clock::now() >= heartbeat_at_) on_heartbeat();
      if (Clock::now() >= demand_at_) publish_demand();
      if (ha_ && Clock::now() >= ha_->publish_at) on_ha_heartbeat();
    }
  }

  // The state this broker ended in, for the stop line: "" when it is not one of a pair.
  std::string_view ha_state() const { return ha_ ? ha_state_name(ha_->fsm.state()) : ""; }

 private:
void on_pipe() {
    auto m = recv_pipe(pipe_);
    if (!m || m->command == PipeCommand::Term) {
      terminated_ = true;
    } else if (m->command == PipeCommand::Stats) {
      send_pipe(pipe_, PipeCommand::Stats, args_of(stats()));  // with the queue waits since the last
      waits_us_.clear();
    }
  }

  // Reads and handles messages from `socket` until none is waiting, or kDrainBudget of them. One
  // Frames receives them all: the handlers move out what they keep.
  void drain(zmq::socket_ref socket, void (Broker::*handle)(Frames&)) {
    for (int i = 0; i < kDrainBudget && !terminated_; ++i) {
      if (!recv_frames_into(socket, in_, zmq::recv_flags::dontwait)) return;
      if (frames_bytes(in_) > max_bytes_) {
        count(Fault::Oversized);  // dropped
        continue;
      }
      (this->*handle)(in_);
    }
  }

  // The de-duplication key of request `id` from `client` (see Request::key), built in `key`
  // (whose capacity is reused); empty when the body carries no id.
  static void make_key(std::string& key, const zmq::message_t& client, std::string_view id) {
    key.clear();
    if (id.empty()) return;
    key.append(client.to_string_view());
    key.push_back('\0');
    key.append(id);
  }

  // The service of that name, created on first use.
  Service& service_named(std::string_view name) {
    auto it = services_.find(name);
    if (it == services_.end()) {
      it = services_.emplace(std::string(name), Service{}).first;
      it->second.name = it->first;
      it->second.n.queue_wait = Histogram(bounds_);
    }
    return it->second;
  }

  void on_frontend(Frames& frames) {
    auto m = view_client_request(frames);
    if (!m) return count(m.fault());  // cannot be answered in its own protocol: dropped
    if (ha_ && !ha_->fsm.active() && !ha_vote()) return;  // not ours to serve: dropped
    if (m->service.starts_with("mmi.")) return on_mmi(m.value());
    ++n_.requests;
    const std::string_view id = peek_request_id(m->body);
    make_key(key_, *m->sender, id);
    if (!key_.empty() && pending_.contains(std::string_view(key_))) {
      ++n_.retries_dropped;  // already queued or being served: its answer will come
      return;
    }
    auto& service = service_named(m->service);
    const auto now = Clock::now();
    service.demand.saw(m->sender->to_string_view(), now);  // rejected or not, it is demand
    if (service.requests.size() >= max_queue_) {
      ++n_.rejected_busy;
      ++service.n.rejected;
      auto body = encode_app_reply(id.empty() ? "-" : id, 503, R"({"error":"queue full"})");
      return to_client(*m->sender, service.name, body);
    }
    const RequestSlot slot = take_slot();
    Request& r = requests_[slot];
    r.client = std::move(*m->sender);
    r.body.clear();
    for (auto& f : m->body) r.body.push_back(std::move(f));  // `id` points into it no more
    r.key = key_;  // into the capacity the slot kept
    r.queued_at = now;
    r.requeues = 0;
    if (!r.key.empty()) pending_.insert(std::string_view(r.key));
    service.demand.change(+1, now);
    ++service.demand.arrivals;
    ++service.n.requests;
    service.requests.push_back(slot);
    dispatch(service);
  }

  // A free request slot (a new one when none is free).
  RequestSlot take_slot() {
    if (free_requests_.empty()) {
      requests_.emplace_back();
      return static_cast<RequestSlot>(requests_.size() - 1);
    }
    const RequestSlot slot = free_requests_.back();
    free_requests_.pop_back();
    return slot;
  }

  // A request that ended (answered or given up): out of the books, its slot free again. Its
  // frames are released; the slot keeps their capacity.
  void release(RequestSlot slot) {
    Request& r = requests_[slot];
    if (!r.key.empty()) pending_.erase(std::string_view(r.key));
    r.body.clear();
    free_requests_.push_back(slot);
  }

  // RFC 8: mmi.service answers 200 when the service has workers, 404 when not; other mmi.* 501.
  void on_mmi(ClientRequestView& m) {
    ++n_.mmi;
    std::string_view code = "501";
    if (m.service == "mmi.service") {
      const std::string_view asked = m.body.empty() ? std::string_view() : m.body[0].to_string_view();
      auto it = services_.find(asked);
      code = it != services_.end() && it->second.workers > 0 ? "200" : "404";
    }
    auto body = encode_mmi_reply(code);
    to_client(*m.sender, m.service, body);
  }

  void on_backend(Frames& frames) {
    auto m = view_from_worker(frames);
    if (!m) return count(m.fault());
    auto it = worker_slots_.find(m->peer->to_string_view());
    if (it == worker_slots_.end()) {
      if (m->command == Command::Ready) return on_ready(m.value());
      ++n_.unknown_worker;  // e.g. after a broker restart: tell it to register again
      ++n_.unknown_worker_commands[std::string(command_name(m->command))];
      // It registers again on this answer; or, if it said DISCONNECT itself (a worker leaving
      // a broker that restarted), the answer lets it go at once.
      to_worker(*m->peer, Command::Disconnect);
      return;
    }
    const WorkerSlot slot = it->second;
    auto& w = workers_[slot];
    w.expiry = Clock::now() + expiry_;
    switch (m->command) {
      case Command::Ready:  // READY twice: a protocol error
        ++n_.protocol_errors;
        ++n_.protocol_errors_by_kind.ready_twice;
        to_worker(w.address, Command::Disconnect);
        return remove_worker(slot);
      case Command::Reply:
        return on_reply(slot, m.value());
      case Command::Disconnect:
        if (!w.held.empty()) {  // requests crossed its DISCONNECT: it serves them first (see the top)
          w.leaving = true;
          return;
        }
        return let_go(slot);
      case Command::Heartbeat:
        return on_worker_heartbeat(slot);
      case Command::Request:
        return;
    }
  }

  // A REPLY answers the held request with its client and request id; a worker serves in order,
  // so one whose body has no id (a stranger's) answers the oldest. The worker's credit comes back.
  void on_reply(WorkerSlot slot, WorkerMessageView& m) {
    auto& w = workers_[slot];
    if (w.held.empty()) {  // a REPLY it was never asked for
      ++n_.protocol_errors;
      ++n_.protocol_errors_by_kind.unasked_reply;
      return;
    }
    std::size_t i = 0;
    make_key(key_, *m.client, peek_request_id(m.body));
    if (!key_.empty()) {
      while (i < w.held.size() && requests_[w.held[i]].key != key_) ++i;
      if (i == w.held.size()) i = 0;
    }
    Service& service = *w.service;
    const RequestSlot answered = w.held[i];
    const auto now = Clock::now();
    service.demand.change(-1, now);
    ++service.demand.replies;
    service.demand.service_s += std::chrono::duration<double>(now - requests_[answered].dispatched_at).count();
    w.held.erase(w.held.begin() + static_cast<std::ptrdiff_t>(i));
    release(answered);
    ++n_.replies;
    ++service.n.replies[peek_reply_status(m.body)];
    to_client(*m.client, service.name, m.body);
    if (w.leaving) {  // it served what crossed its DISCONNECT
      ++n_.crossed_disconnect;
      if (w.held.empty()) return let_go(slot);  // now it may go
      return;
    }
    service.ready.push_back({slot, w.epoch});
    dispatch(service);
  }

  // A worker serves its requests one at a time, in the order they came, reads every message
  // waiting before it heartbeats, and sends no heartbeat while it serves: the replies to what
  // reached it always come before its next heartbeat. So a heartbeat that arrives more than two
  // intervals after a request went to it means that request (or its reply) was lost on the way,
  // e.g. in a network partition shorter than the expiry. Each such request is re-queued (once, as
  // on expiry) and the worker, alive, gets its credit back.
  // A heartbeat also gives a request held back by a full queue another try.
  void on_worker_heartbeat(WorkerSlot slot) {
    auto& w = workers_[slot];
    Service& service = *w.service;
    const auto now = Clock::now();
    for (auto it = w.held.begin(); it != w.held.end();) {
      if (now - requests_[*it].dispatched_at <= 2 * heartbeat_) {
        ++it;
        continue;
      }
      ++n_.lost_in_transit;
      requeue(service, *it);
      it = w.held.erase(it);
      if (!w.leaving) service.ready.push_back({slot, w.epoch});
    }
    if (w.leaving && w.held.empty()) return let_go(slot);
    dispatch(service);
  }

  // A request its worker will not answer goes back to the front of its queue, once; the second
  // time it is given up (its client's retry will bring it back).
  void requeue(Service& service, RequestSlot slot) {
    Request& r = requests_[slot];
    if (r.requeues == 0) {
      ++r.requeues;
      ++n_.requeued;
      service.requests.push_front(slot);
    } else {
      ++n_.abandoned;
      service.demand.change(-1);
      release(slot);
    }
  }

  // A worker that said DISCONNECT and holds nothing: forgotten, and told so.
  void let_go(WorkerSlot slot) {
    ++n_.disconnects;
    zmq::message_t address;
    address.copy(workers_[slot].address);  // remove_worker finds it by its address
    remove_worker(slot);
    to_worker(address, Command::Disconnect);
  }

  void on_ready(WorkerMessageView& m) {
    if (m.service.starts_with("mmi.")) {
      ++n_.protocol_errors;
      ++n_.protocol_errors_by_kind.reserved_service;
      return to_worker(*m.peer, Command::Disconnect);
    }
    WorkerSlot slot;
    if (free_workers_.empty()) {
      workers_.emplace_back();
      slot = static_cast<WorkerSlot>(workers_.size() - 1);
    } else {
      slot = free_workers_.back();
      free_workers_.pop_back();
    }
    worker_slots_.emplace(std::string(m.peer->to_string_view()), slot);
    auto& w = workers_[slot];
    Service& service = service_named(m.service);
    w.address = std::move(*m.peer);
    w.service = &service;
    w.epoch = ++epochs_;
    w.expiry = Clock::now() + expiry_;
    w.held.clear();
    w.leaving = false;
    ++service.workers;
    for (int i = 0; i < credit_; ++i) service.ready.push_back({slot, w.epoch});
    dispatch(service);
  }

  // Hands queued requests of `service` to the workers with credit, least recently used first. A
  // worker whose queue is full (it has not read for a while) keeps its place on the books, its
  // token goes to the back of the line and it gets a request later; each token is tried once
  // per call. Tokens of workers that are gone are dropped as they come up.
  void dispatch(Service& service) {
    if (ha_ && !ha_->fsm.active()) return;  // a broker that is not ACTIVE hands out nothing
    for (std::size_t tries = service.ready.size(); tries > 0 && !service.ready.empty() &&
                                                   !service.requests.empty(); --tries) {
      const Token token = service.ready.front();
      service.ready.pop_front();
      auto& w = workers_[token.worker];
      if (w.epoch != token.epoch || w.leaving) continue;  // a token of a worker gone, or leaving
      const RequestSlot slot = service.requests.front();
      Request& r = requests_[slot];
      const Routed sent = route([&](zmq::send_flags f) {
        return send_broker_request(backend_, w.address, r.client, r.body, f);
      });
      if (sent != Routed::Sent) {  // the request stays first in line
        if (sent == Routed::Gone) {
          ++n_.vanished;
          remove_worker(token.worker);  // the worker vanished: its socket closed (e.g. it crashed)
          return;                       // (remove_worker dispatched what it could)
        }
        ++n_.full_pipes;
        service.ready.push_back(token);
        continue;
      }
      service.requests.pop_front();
      const auto now = Clock::now();
      waits_us_.push_back(static_cast<uint32_t>(
          std::chrono::duration_cast<std::chrono::microseconds>(now - r.queued_at).count()));
      const double wait_s = std::chrono::duration<double>(now - r.queued_at).count();
      service.demand.wait_s += wait_s;
      service.n.queue_wait.observe(wait_s);
      ++service.demand.waits;
      r.dispatched_at = now;
      w.held.push_back(slot);
      n_.most_held = std::max(n_.most_held, static_cast<long>(w.held.size()));
    }
  }

  void on_heartbeat() {
    const auto now = Clock::now();
    const bool send_away = ha_sends_workers_away(now);
    expired_.clear();
    for (const auto& [id, slot] : worker_slots_) {
      auto& w = workers_[slot];
      if (w.expiry <= now)
        expired_.push_back(slot);
      else if (!send_away)
        to_worker(w.address, Command::Heartbeat);
    }
    n_.ha_withheld_heartbeats += send_away ? 1 : 0;
    for (const WorkerSlot slot : expired_) {
      ++n_.expired;
      remove_worker(slot);
    }
    heartbeat_at_ = now + heartbeat_;
  }

  // Forgets a worker; a request it held goes back to the front of its queue, once.
  void remove_worker(WorkerSlot slot) {
    auto& w = workers_[slot];
    if (w.epoch == 0) return;
    Service& service = *w.service;
    --service.workers;
    for (auto r = w.held.rbegin(); r != w.held.rend(); ++r) {  // newest first: the oldest ends first in line
      if (w.leaving) ++n_.requeued_after_disconnect;
      requeue(service, *r);
    }
    w.held.clear();
    if (auto it = worker_slots_.find(w.address.to_string_view()); it != worker_slots_.end())
      worker_slots_.erase(it);
    w.address = zmq::message_t();
    w.epoch = 0;
    free_workers_.push_back(slot);
    dispatch(service);
  }

  // --- the pair (Binary Star) --------------------------------------------------------------

  // PASSIVE with the peer alive: the workers hear no heartbeat from here (see the top).
  bool ha_sends_workers_away(Clock::time_point now) const {
    return ha_ && ha_->fsm.state() == HaState::Passive && ha_->fsm.peer_heard() &&
           !ha_->fsm.peer_expired(now);
  }

  // A client request came while this broker is not ACTIVE: its vote. True when the state machine
  // made it ACTIVE (the peer silent long enough) and the request is to be served; else it is
  // dropped and counted.
  bool ha_vote() {
    const auto now = Clock::now();
    const double silent = ha_->fsm.peer_silent_s(now);
    const HaOutcome o = ha_->fsm.on_client_request(now);
    if (!o.serve) {
      ++n_.ha_dropped;
      return false;
    }
    on_ha_outcome(o, fmt::format("peer silent {:.1f} s, {}", silent, o.reason));
    return true;
  }

  // Every state message waiting from the peer; a malformed one is counted and dropped.
  void on_peer() {
    for (int i = 0; i < kDrainBudget && !terminated_; ++i) {
      if (!recv_frames_into(ha_->sub, in_, zmq::recv_flags::dontwait)) return;
      const auto m = decode_ha_state(in_);
      if (!m) {
        ++n_.ha_malformed;
        continue;
      }
      const HaOutcome o = ha_->fsm.on_peer(m->state, m->role, Clock::now());
      if (!o.changed() && o.anomaly == HaAnomaly::None) {  // the usual heartbeat: nothing to say
        ha_logged_ = HaAnomaly::None;
        continue;
      }
      on_ha_outcome(o, fmt::format("the peer, started as {}, is {}: {}", ha_role_name(m->role),
                                   ha_state_name(m->state), o.reason));
    }
  }

  // Publishes this broker's state, and notices a peer that went silent.
  void on_ha_heartbeat() {
    const auto now = Clock::now();
    publish_ha_state();
    const HaOutcome o = ha_->fsm.tick(now);
    // While the peer is silent, an inproc peer is connected anew: one restarted in this process
    // (zyolo run --ha) is heard again within a heartbeat.
    if (ha_->fsm.peer_expired(now)) reconnect_inproc(ha_->sub, ha_->peer_endpoint);
    if (o.peer_lost) {
      ++n_.ha_peer_lost;
      const std::string state(ha_state_name(ha_->fsm.state()));
      note_ha({HaNote::Kind::PeerLost, state, state,
               fmt::format("the peer went silent ({:.1f} s)", ha_->fsm.peer_silent_s(now))});
    }
    ha_->publish_at = now + ha_->interval;
  }

  // Tells the parent (which says it on stderr and records it): this thread prints nothing. The
  // pipe holds a thousand messages; a parent that far behind loses a note (STATS still counts the
  // transitions), and the broker never waits for it.
  void note_ha(const HaNote& note) {
    (void)send_pipe(pipe_, PipeCommand::Ha, args_of(note), zmq::send_flags::dontwait);
  }

  void publish_ha_state() {
    Frames frames = encode_ha_state(ha_->fsm.state(), ha_->fsm.role());
    (void)send_frames(ha_->pub, frames, zmq::send_flags::dontwait);  // PUB: never blocks
  }

  // What an event did: a state change is logged with its reason and counted, an anomaly is
  // logged (each time: it is a misconfiguration or a split brain healing) and counted. Entering
  // ACTIVE dispatches what waits; leaving it gives up what was queued (the clients' retries find
  // the active broker). The peer hears of a change at once.
  void on_ha_outcome(const HaOutcome& o, const std::string& why) {
    if (o.anomaly != HaAnomaly::None) ++n_.ha_anomalies[std::string(ha_anomaly_name(o.anomaly))];
    if (o.anomaly != ha_logged_) {  // an anomaly is logged when it begins, counted every time
      ha_logged_ = o.anomaly;
      if (o.anomaly != HaAnomaly::None) {
        const std::string state(ha_state_name(o.from));
        note_ha({HaNote::Kind::Anomaly, state, state,
                 fmt::format("{} ({}): {}", o.anomaly == HaAnomaly::SameRole ? "MISCONFIGURED" : "ANOMALY",
                             ha_anomaly_name(o.anomaly), why)});
      }
    }
    if (!o.changed()) return;
    ++n_.ha_transitions;
    note_ha({HaNote::Kind::Transition, std::string(ha_state_name(o.from)), std::string(ha_state_name(o.to)), why});
    if (o.from == HaState::Active) {
      for (auto& [name, service] : services_)
        while (!service.requests.empty()) {
          const RequestSlot slot = service.requests.front();
          service.requests.pop_front();
          service.demand.change(-1);
          release(slot);
          ++n_.ha_dropped;
        }
    }
    publish_ha_state();
    if (o.to == HaState::Active)
      for (auto& [name, service] : services_) dispatch(service);
  }

  // [DEMAND][JSON] on the control socket: each service's demand over the interval just ended.
  void publish_demand() {
    const auto now = Clock::now();
    const double interval_s = std::chrono::duration<double>(now - demand_from_).count();
    Demand demand{std::lround(1000 * interval_s), {}};
    for (auto& [name, s] : services_) {
      auto& d = s.demand;
      d.change(0, now);  // closes the integral exactly where the interval ends
      std::erase_if(d.clients, [&](const auto& c) { return now - c.second > client_window_; });
      long held = 0, idle = 0;
      for (const auto& [id, slot] : worker_slots_)
        if (workers_[slot].service == &s) {
          held += static_cast<long>(workers_[slot].held.size());
          idle += workers_[slot].held.empty();
        }
      demand.services[name] = {
          interval_s > 0 ? d.area / interval_s : static_cast<double>(d.outstanding),
          d.outstanding, static_cast<long>(s.requests.size()), held, s.workers,
          idle, static_cast<long>(d.clients.size()), d.arrivals,
          d.replies, d.waits ? 1000 * d.wait_s / static_cast<double>(d.waits) : 0.0,
          d.replies ? 1000 * d.service_s / static_cast<double>(d.replies) : 0.0};
      d.area = d.wait_s = d.service_s = 0;
      d.arrivals = d.replies = d.waits = 0;
    }
    Frames frames = encode_pipe(PipeCommand::Demand, args_of(demand));
    (void)send_frames(control_, frames, zmq::send_flags::dontwait);  // PUB: a slow subscriber misses it
    demand_from_ = now;
    demand_at_ = now + demand_interval_;
  }

  // An answer the client cannot take now (gone, or its queue full) is counted; the client's
  // retry brings the request back, and the request id keeps it from being delivered twice.
  // The body's frames are moved out.
  void to_client(const zmq::message_t& client, std::string_view service,
                 std::span<zmq::message_t> body) {
    if (route([&](zmq::send_flags f) { return send_client_reply(frontend_, client, service, body, f); }) !=
        Routed::Sent)
      ++n_.unroutable;
  }

  void to_worker(const zmq::message_t& address, Command c) {
    if (route([&](zmq::send_flags f) {
          auto frames = encode_broker_command(address, c);
          return send_frames(backend_, frames, f);
        }) != Routed::Sent)
      ++n_.unroutable;
  }

  // Sends to a ROUTER peer (ZMQ_ROUTER_MANDATORY) through `send`, which takes the flags: Gone
  // when the peer is gone (EHOSTUNREACH), Full when its queue is at the high-water mark (EAGAIN);
  // never blocks.
  template <class Send>
  static Routed route(Send send) {
    try {
      return send(zmq::send_flags::dontwait) ? Routed::Sent : Routed::Full;
    } catch (const zmq::error_t& e) {
      if (e.num() == EHOSTUNREACH) return Routed::Gone;
      throw;
    }
  }

  void count(Fault f) { ++faults_[static_cast<int>(f)]; }

  // The counters kept as they happen, with the gauges and the malformed messages by kind.
  BrokerStats stats() const {
    BrokerStats s = n_;
    s.workers = static_cast<long>(worker_slots_.size());
    for (const auto& [id, slot] : worker_slots_) {
      s.idle += workers_[slot].held.empty();
      s.held += static_cast<long>(workers_[slot].held.size());
    }
    const auto now = Clock::now();
    for (const auto& [name, service] : services_) {
      s.queue += static_cast<long>(service.requests.size());
      ServiceCount& c = s.services[name];
      c.workers = service.workers;
      c.queue = static_cast<long>(service.requests.size());
      c.clients = std::count_if(service.demand.clients.begin(), service.demand.clients.end(),
                                [&](const auto& client) { return now - client.second <= client_window_; });
      c.requests = service.n.requests;
      c.rejected = service.n.rejected;
      for (std::size_t i = 0; i < std::size(kReplyStatuses); ++i)
        if (service.n.replies[i]) c.replies[std::string(kReplyStatuses[i])] = service.n.replies[i];
      c.queue_wait = service.n.queue_wait;
    }
    for (const auto& [id, slot] : worker_slots_)
      if (!workers_[slot].held.empty()) ++s.services[workers_[slot].service->name].busy;
    for (int i = 0; i < kFaultCount; ++i) {
      s.malformed += faults_[i];
      if (faults_[i]) s.faults[std::string(fault_name(static_cast<Fault>(i)))] = faults_[i];
    }
    s.cpu_us = thread_cpu_us();
    s.queue_waits_us = waits_us_;
    s.ha_state = ha_state();
    s.ha_peer_up = ha_ && ha_->fsm.peer_heard() && !ha_->fsm.peer_expired(now);
    return s;
  }

  zmq::socket_ref pipe_;
  zmq::socket_t frontend_, backend_;
  zmq::socket_t control_;  // PUB: DEMAND for the controllers
  std::string frontend_endpoint_, backend_endpoint_, control_endpoint_;
  milliseconds heartbeat_, expiry_;
  std::size_t max_queue_;
  std::size_t max_bytes_;  // broker.max_message_bytes: all frames of one message, any transport
  int credit_;             // broker.worker_credit: requests a worker may hold at once
  long epochs_ = 0;        // workers registered so far
  milliseconds demand_interval_, client_window_;
  std::vector<double> bounds_;  // metrics.bounds: each service's queue-wait histogram
  Clock::time_point heartbeat_at_, demand_at_, demand_from_;
  bool terminated_ = false;
  // The hot path allocates nothing once these have grown to the most they held: every message is
  // received into in_, a request's key is built in key_, requests and workers live in slots that
  // are reused (a std::deque keeps their addresses, which pending_ and services point into), and
  // pending_'s nodes come from a pool that recycles them.
  Frames in_;
  std::string key_;
  std::deque<Request> requests_;
  std::vector<RequestSlot> free_requests_;
  std::deque<WorkerEntry> workers_;
  std::vector<WorkerSlot> free_workers_, expired_;
  std::map<std::string, WorkerSlot, std::less<>> worker_slots_;  // by routing id
  std::map<std::string, Service, std::less<>> services_;         // by name; never erased
  std::pmr::unsynchronized_pool_resource pool_;
  std::pmr::unordered_set<std::string_view> pending_{&pool_};  // keys of requests held, in requests_
  std::vector<uint32_t> waits_us_;  // queue waits of requests dispatched since the last STATS
  BrokerStats n_;                 // the counters (stats() adds the gauges)
  long faults_[kFaultCount] = {};  // malformed messages by fault
  std::optional<Ha> ha_;           // one of a broker pair (ha.role set); empty: a lone broker
  HaAnomaly ha_logged_ = HaAnomaly::None;  // the anomaly logged last, until the peer is normal again
};

}  // namespace

void broker(zmq::context_t& ctx, zmq::socket_ref pipe, const Config& config) {
  Broker b(ctx, pipe, config);
  signal_ready(pipe);
  b.run();
}

}  // namespace zyolo
