// Configuration: the built-in defaults load, and every kind of bad input is an error naming it.
#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <unistd.h>
#include <string>

#include "src/config/config.hpp"
#include "src/wire/sockopts.hpp"

using namespace zyolo;

namespace {

// The message of the ConfigError that `f` throws ("" if it throws none).
template <class F>
std::string error_of(F f) {
  try {
    f();
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

// A temporary TOML file, removed at the end of the test.
struct TempFile {
  std::string path;
  explicit TempFile(const std::string& text) : path("/tmp/zyolo-test-config-" + std::to_string(::getpid()) + ".toml") {
    std::ofstream(path) << text;
  }
  ~TempFile() { std::remove(path.c_str()); }
};

}  // namespace

TEST_CASE("the defaults are config/default.toml's") {
  Config c = default_config();
  CHECK(c.run.clients == 4);
  CHECK(c.run.workers == 2);
  CHECK(c.run.service == "yolo");
  CHECK(c.broker.heartbeat_ms == 1000);
  CHECK(c.broker.liveness == 3);
  CHECK(c.worker.model == "auto");
  CHECK(c.client.deadline_ms >= c.client.timeout_ms);
  validate(c);
  // CTest passes the build's ZYOLO_TRANSPORT; only src/config/config.cpp is compiled with it.
  const char* built = std::getenv("ZYOLO_BUILD_TRANSPORT");
  REQUIRE_MESSAGE(built != nullptr, "ZYOLO_BUILD_TRANSPORT is unset (CTest sets it)");
  CHECK(c.run.transport == std::string(built));
  CHECK(c.frontend().starts_with(c.run.transport + ":"));
}

TEST_CASE("a TOML overlay changes only the keys it sets") {
  Config c = default_config();
  apply_toml(c, "[run]\nclients = 9\n[broker]\nheartbeat_ms = 250\n", "overlay");
  CHECK(c.run.clients == 9);
  CHECK(c.broker.heartbeat_ms == 250);
  CHECK(c.run.workers == 2);
  apply_toml(c, "run.transport = 'tcp'\n", "overlay");
  validate(c);
  CHECK(c.frontend() == c.endpoints.tcp_frontend);
  CHECK(c.backend() == c.endpoints.tcp_backend);
}

TEST_CASE("requests and duration are alternatives: setting one switches the other off") {
  Config c = default_config();
  apply_toml(c, "[run]\nrequests = 50\n", "overlay");
  CHECK(c.run.requests == 50);
  CHECK(c.run.duration_s == 0);
  apply_toml(c, "[run]\nduration_s = 2.5\n", "overlay");
  CHECK(c.run.duration_s == 2.5);
  CHECK(c.run.requests == 0);
}

TEST_CASE("bad configuration is an error that names the key and the source") {
  Config c = default_config();
  auto msg = error_of([&] { apply_toml(c, "[run]\nclinets = 3\n", "my.toml"); });
  CHECK(msg.find("my.toml") != std::string::npos);
  CHECK(msg.find("unknown key 'run.clinets'") != std::string::npos);

  msg = error_of([&] { apply_toml(c, "[run]\nclients = 'many'\n", "my.toml"); });
  CHECK(msg.find("'run.clients' must be a whole number") != std::string::npos);

  msg = error_of([&] { apply_toml(c, "[run]\nclients = 1.5\n", "my.toml"); });
  CHECK(msg.find("'run.clients' must be a whole number") != std::string::npos);

  msg = error_of([&] { apply_toml(c, "[broker]\nliveness = 0\n", "my.toml"); });
  CHECK(msg.find("'broker.liveness' must be between 1 and 100") != std::string::npos);

  msg = error_of([&] { apply_toml(c, "[worker]\nmodel = 3\n", "my.toml"); });
  CHECK(msg.find("'worker.model' must be a string") != std::string::npos);

  msg = error_of([&] { apply_toml(c, "[worker]\nservice_ms = -1\n", "my.toml"); });
  CHECK(msg.find("'worker.service_ms' must be between") != std::string::npos);

  msg = error_of([&] { apply_toml(c, "[nosuch]\nx = 1\n", "my.toml"); });
  CHECK(msg.find("unknown key 'nosuch.x'") != std::string::npos);

  msg = error_of([&] { apply_toml(c, "[run\nclients = 3\n", "my.toml"); });
  CHECK(msg.find("my.toml:1:") != std::string::npos);
}

TEST_CASE("a missing or broken config file is an error that names the path") {
  Config c = default_config();
  auto msg = error_of([&] { apply_toml_file(c, "/nonexistent/zyolo.toml"); });
  CHECK(msg.find("/nonexistent/zyolo.toml") != std::string::npos);

  TempFile bad("[client]\ntimeout_ms = 'soon'\n");
  msg = error_of([&] { apply_toml_file(c, bad.path); });
  CHECK(msg.find(bad.path) != std::string::npos);
  CHECK(msg.find("client.timeout_ms") != std::string::npos);

  TempFile good("[client]\ntimeout_ms = 700\n");
  apply_toml_file(c, good.path);
  CHECK(c.client.timeout_ms == 700);
}

TEST_CASE("cross-field rules") {
  Config c = default_config();
  c.run.transport = "udp";
  CHECK(error_of([&] { validate(c); }).find("run.transport") != std::string::npos);
  c = default_config();
  c.run.workers = 0;
  CHECK(error_of([&] { validate(c); }).find("--workers") != std::string::npos);
  c = default_config();
  c.run.requests = 0;
  c.run.duration_s = 0;
  CHECK(error_of([&] { validate(c); }).find("--requests") != std::string::npos);
  c = default_config();
  c.client.deadline_ms = c.client.timeout_ms - 1;
  CHECK(error_of([&] { validate(c); }).find("client.deadline_ms") != std::string::npos);
  c = default_config();
  c.run.service = "mmi.service";
  CHECK(error_of([&] { validate(c); }).find("mmi.") != std::string::npos);
  c = default_config();
  c.autoscale.min_workers = 5;
  c.autoscale.max_workers = 2;
  CHECK(error_of([&] { validate(c); }).find("autoscale.min_workers") != std::string::npos);
  c = default_config();
  c.sockets.reconnect_ivl_max_ms = c.sockets.reconnect_ivl_ms - 1;
  CHECK(error_of([&] { validate(c); }).find("sockets.reconnect_ivl_max_ms") != std::string::npos);
  c = default_config();
  c.sockets.heartbeat_ivl_ms = 0;
  CHECK(error_of([&] { validate(c); }).find("sockets.heartbeat_timeout_ms") != std::string::npos);
}

TEST_CASE("[sockets] options reach a data-plane socket, as libzmq reads them back") {
  Config c = default_config();
  apply_toml(c, R"(
[sockets]
linger_ms = 250
sndhwm = 77
rcvhwm = 88
reconnect_ivl_ms = 150
reconnect_ivl_max_ms = 4000
heartbeat_ivl_ms = 700
heartbeat_timeout_ms = 2100
[broker]
max_message_bytes = 65536
)", "test");
  validate(c);
  zmq::context_t ctx;
  zmq::socket_t s(ctx, zmq::socket_type::dealer);
  apply_socket_options(s, c, Side::Connects);
  CHECK(s.get(zmq::sockopt::linger) == 250);
  CHECK(s.get(zmq::sockopt::sndhwm) == 77);
  CHECK(s.get(zmq::sockopt::rcvhwm) == 88);
  CHECK(s.get(zmq::sockopt::reconnect_ivl) == 150);
  CHECK(s.get(zmq::sockopt::reconnect_ivl_max) == 4000);
  CHECK(s.get(zmq::sockopt::heartbeat_ivl) == 700);
  CHECK(s.get(zmq::sockopt::heartbeat_timeout) == 2100);
  CHECK(s.get(zmq::sockopt::maxmsgsize) == 65536);
  s.set(zmq::sockopt::linger, 0);
}
