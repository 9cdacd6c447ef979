// Configuration: the built-in defaults load, and every kind of bad input is an error naming it.
#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <unistd.h>
#include <set>
#include <string>
#include <toml++/toml.h>
#include <vector>

#include "generated/default_config.hpp"
#include "src/config/config.hpp"
#include "src/config/settings.hpp"
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

// --- the settings table: one declaration per key ------------------------------------------------

namespace {

// Every leaf key of a TOML table, dotted ("run.clients"); [[pools]] aside.
void leaf_keys(const toml::table& t, const std::string& prefix, std::set<std::string>& out) {
  for (const auto& [k, v] : t) {
    const std::string key = prefix.empty() ? std::string(k.str()) : prefix + "." + std::string(k.str());
    if (const auto* sub = v.as_table()) leaf_keys(*sub, key, out);
    else if (key != "pools") out.insert(key);
  }
}

}  // namespace

TEST_CASE("every setting has its default in config/default.toml, and every default is a setting") {
  std::set<std::string> in_file, declared, flags;
  leaf_keys(toml::parse(kDefaultConfigToml), "", in_file);
  for (const auto& s : settings()) {
    CHECK_MESSAGE(declared.insert(std::string(s.key)).second, "declared twice: ", s.key);
    if (!s.flag.empty()) {
      CHECK_MESSAGE(flags.insert(std::string(s.flag)).second, "flag used twice: ", s.flag);
      CHECK_MESSAGE(!s.help.empty(), s.key, " has a flag and no help");
      CHECK(find_setting_by_flag(s.flag) == &s);
    }
    CHECK(find_setting(s.key) == &s);
  }
  CHECK(in_file == declared);
  CHECK(find_setting("run.nothing") == nullptr);
}

TEST_CASE("a flag's text is checked as the key's TOML value is, in the same words") {
  Config c = default_config();
  const Setting& clients = *find_setting("run.clients");
  CHECK(store_setting_text(clients, c, "12").empty());
  CHECK(c.run.clients == 12);
  CHECK(store_setting_text(clients, c, "0") == "must be between 1 and 100000");
  CHECK(store_setting_text(clients, c, "many") == "must be a whole number");
  CHECK(store_setting_text(clients, c, "3.5") == "must be a whole number");
  CHECK(c.run.clients == 12);  // unchanged by what was refused
  TempFile file("[run]\nclients = 0\n");
  CHECK(error_of([&] { apply_toml_file(c, file.path); }).find("must be between 1 and 100000") != std::string::npos);

  const Setting& transport = *find_setting("run.transport");
  CHECK(store_setting_text(transport, c, "udp") == "must be one of inproc, ipc, tcp, not 'udp'");
  CHECK(store_setting_text(transport, c, "").empty());  // "": the build's default
  CHECK(store_setting_text(*find_setting("worker.family"), c, "").find("must be one of") == 0);
  CHECK(store_setting_text(*find_setting("worker.conf_threshold"), c, "0.5").empty());
  CHECK(c.worker.conf_threshold == doctest::Approx(0.5));
  CHECK(store_setting_text(*find_setting("worker.conf_threshold"), c, "2") == "must be between 0 and 1");
  CHECK(store_setting_text(*find_setting("autoscale.enabled"), c, "yes") == "must be true or false");
  CHECK(setting_text(clients, default_config()) == "4");
  CHECK(setting_text(transport, default_config()) == "\"\"");
}

TEST_CASE("validate checks every key's own range, naming the key and its flag") {
  Config c = default_config();
  c.worker.cv_threads = 999;
  c.run.requests = 10;
  CHECK(error_of([&] { validate(c); }) == "worker.cv_threads (--cv-threads) must be between 0 and 256");
  c = default_config();
  c.broker.liveness = 0;
  CHECK(error_of([&] { validate(c); }) == "broker.liveness must be between 1 and 100");
}

// A frontend or backend may be a comma-separated list (a broker pair's); a single endpoint is a
// list of one, and a list that cannot work is refused by validate(), naming the key.
TEST_CASE("endpoint lists: split in order; one transport, no empty item, no repeats") {
  CHECK(split_endpoints("tcp://a:1") == std::vector<std::string>{"tcp://a:1"});
  CHECK(split_endpoints("tcp://a:1,tcp://b:1") == std::vector<std::string>{"tcp://a:1", "tcp://b:1"});
  CHECK(split_endpoints("tcp://a:1,") == std::vector<std::string>{"tcp://a:1", ""});
  Config c = default_config();
  c.run.transport = "tcp";
  c.endpoints.tcp_frontend = "tcp://127.0.0.1:1,tcp://127.0.0.1:2";
  c.endpoints.tcp_backend = "tcp://127.0.0.1:3,tcp://127.0.0.1:4";
  validate(c);
  CHECK(c.frontends().size() == 2);
  CHECK(c.backends() == std::vector<std::string>{"tcp://127.0.0.1:3", "tcp://127.0.0.1:4"});
  CHECK(error_of([&] { require_single_endpoints(c, "the broker"); }).find("endpoints.tcp_frontend") != std::string::npos);
  auto refused = [&](const std::string& list, const std::string& says) {
    Config bad = c;
    bad.endpoints.tcp_backend = list;
    const std::string msg = error_of([&] { validate(bad); });
    CAPTURE(list);
    CHECK(msg.find("endpoints.tcp_backend") != std::string::npos);
    CHECK(msg.find(says) != std::string::npos);
  };
  refused("tcp://127.0.0.1:3,ipc:///tmp/x.ipc", "one transport");
  refused("tcp://127.0.0.1:3,,tcp://127.0.0.1:4", "item 2 of the list is empty");
  refused(",tcp://127.0.0.1:3", "item 1 of the list is empty");
  refused("tcp://127.0.0.1:3,tcp://127.0.0.1:4,tcp://127.0.0.1:3", "tcp://127.0.0.1:3 is in the list twice");
  c.endpoints.tcp_control = "tcp://127.0.0.1:5,tcp://127.0.0.1:6";
  CHECK(error_of([&] { validate(c); }).find("endpoints.tcp_control") != std::string::npos);
}

TEST_CASE("[ha]: a broker pair's configuration errors, before anything starts") {
  auto ha = [](std::string role, std::string bind, std::string peer) {
    Config c = default_config();
    c.run.transport = "tcp";
    c.ha.role = std::move(role);
    c.ha.bind = std::move(bind);
    c.ha.peer = std::move(peer);
    return error_of([&] { validate(c); });
  };
  CHECK(ha("", "", "") == "");
  CHECK(ha("primary", "tcp://*:5560", "tcp://10.0.0.2:5560") == "");
  CHECK(ha("backup", "tcp://127.0.0.1:5561", "tcp://127.0.0.1:5560") == "");
  CHECK(ha("primary", "", "tcp://10.0.0.2:5560").find("needs ha.bind (--ha-bind)") != std::string::npos);
  CHECK(ha("backup", "tcp://*:5560", "").find("needs ha.peer (--ha-peer)") != std::string::npos);
  CHECK(ha("", "tcp://*:5560", "").find("need ha.role (--ha primary or --ha backup)") != std::string::npos);
  CHECK(ha("", "", "tcp://10.0.0.2:5560").find("need ha.role") != std::string::npos);
  CHECK(ha("primary", "tcp://127.0.0.1:5560", "tcp://127.0.0.1:5560").find("is this broker's own ha.bind") !=
        std::string::npos);
  CHECK(ha("primary", "127.0.0.1:5560", "tcp://127.0.0.1:5561").find("give an endpoint") != std::string::npos);
  CHECK(ha("primary", "tcp://127.0.0.1:5560", "10.0.0.2").find("ha.peer (--ha-peer) '10.0.0.2'") != std::string::npos);
  CHECK(ha("active", "tcp://*:5560", "tcp://10.0.0.2:5560").find("ha.role (--ha) must be one of primary, backup") !=
        std::string::npos);
  // The pair's endpoints are not the broker's own.
  const Config d = default_config();
  CHECK(ha("primary", d.endpoints.tcp_frontend, "tcp://10.0.0.2:5560").find("frontend, backend or control") !=
        std::string::npos);
  CHECK(ha("primary", "tcp://*:5560", d.endpoints.tcp_backend).find("frontend, backend or control") != std::string::npos);
  Config c = default_config();
  c.run.transport = "tcp";
  c.ha = {"primary", "tcp://*:5560", c.endpoints.tcp_control, 1000, 2};
  CHECK(error_of([&] { validate(c); }).find("ha.peer (--ha-peer)") != std::string::npos);
  c.ha = {"primary", "tcp://*:5560", "tcp://10.0.0.2:5560", 1000, 2};
  c.run.broker = "proxy";
  CHECK(error_of([&] { validate(c); }).find("needs run.broker = mdp") != std::string::npos);
  c = default_config();
  c.ha = {"primary", "tcp://*:5560", "tcp://10.0.0.2:5560", 5, 2};
  CHECK(error_of([&] { validate(c); }).find("ha.heartbeat_ms must be between 10") != std::string::npos);
  c.ha = {"primary", "tcp://*:5560", "tcp://10.0.0.2:5560", 1000, 0};
  CHECK(error_of([&] { validate(c); }).find("ha.missed must be between 1") != std::string::npos);
  c = default_config();
  c.ha = {"primary", "tcp://*:5560", "tcp://10.0.0.2:5560", 1000, 2};
  c.run.transport = "tcp";
  c.curve.key = "broker.key";  // the pair's state channel is CURVE too (tests/test_curve.cpp)
  CHECK(error_of([&] { validate(c); }) == "");
  // The defaults: 1000 ms, 2 missed; off.
  CHECK(d.ha.heartbeat_ms == 1000);
  CHECK(d.ha.missed == 2);
  CHECK_FALSE(d.ha.enabled());
}
