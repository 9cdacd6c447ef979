// Actor: the attached-thread pattern of the ZeroMQ guide (CZMQ's zactor), as one RAII type.
//
//   parent (constructor)                     child thread
//   bind PAIR inproc://actor-<name>-<addr>
//   start thread ───────────────────────────► create PAIR, connect it
//                                             create its own sockets, then send $READY
//   wait for $READY (or $ERROR -> throws) ◄── ...
//   ...                                       loop until $TERM (or the context ends)
//   destructor: send $TERM ─────────────────► close its sockets, return
//   join                                      (its pipe closes with the thread)
//
// The child owns every socket it creates; the parent never touches them. The only thing the two
// share is the context (thread-safe by design) and the messages on the pipe.
#pragma once

#include <functional>
#include <stdexcept>
#include <string>
#include <thread>
#include <zmq.hpp>

namespace zyolo {

// An actor that said $ERROR instead of $READY; the message is what it said.
struct ActorError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class Actor {
 public:
  // The child's body: runs in the new thread with its end of the pipe; it must send $READY (see
  // signal_ready) once it is ready and return on $TERM. An exception it throws is sent to the
  // parent as $ERROR.
  using Body = std::function<void(zmq::context_t&, zmq::socket_ref pipe)>;

  // Binds the pipe, starts the thread and waits for $READY. Throws ActorError on $ERROR.
  Actor(zmq::context_t& ctx, std::string name, Body body);
  // The same without waiting: the caller reads $READY (or $ERROR) from pipe() when it comes, so
  // a slow start (a worker loading its model) does not stop the caller's loop.
  struct NoWait {};
  Actor(zmq::context_t& ctx, std::string name, Body body, NoWait);
  // Sends $TERM and joins.
  ~Actor();
  Actor(const Actor&) = delete;
  Actor& operator=(const Actor&) = delete;

  // The parent's end of the pipe: used only by the thread that created the Actor.
  zmq::socket_ref pipe() { return pipe_; }
  const std::string& name() const { return name_; }

 private:
  std::string name_, endpoint_;
  zmq::socket_t pipe_;
  std::thread thread_;
};

// The one context of a process, made by main: it allows as many sockets as the file-descriptor
// limit does (raised to its hard ceiling), since sockets closed by actors are reaped
// asynchronously and a fleet of hundreds of actors stopped and started needs head-room.
zmq::context_t make_context();

// Sent by a child when it is ready to work.
void signal_ready(zmq::socket_ref pipe);

}  // namespace zyolo
