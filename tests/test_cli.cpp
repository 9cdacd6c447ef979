// The zyolo binary as a user runs it: the reference command with --report, --help, and
// every kind of bad flag or config file, each a clear error naming it with a non-zero exit.
#include <dlfcn.h>
#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "run_binary.hpp"

using namespace std::string_literals;

namespace {

using zyolo_test::has;
using zyolo_test::slurp;
using zyolo_test::zyolo;
using zyolo_test::TempFile;


}  // namespace

TEST_CASE("zyolo run --clients 8 --workers 3 --requests 3000 --model none --report r.json") {
  const std::string report = "/tmp/zyolo-test-cli-report-" + std::to_string(::getpid()) + ".json";
  auto r = zyolo("run --clients 8 --workers 3 --requests 3000 --model none --report " + report);
  INFO(r.out, r.err);
  REQUIRE(r.code == 0);
  CHECK(has(r.out, "answered 3000"));
  CHECK(has(r.out, "lost 0"));
  auto j = nlohmann::json::parse(slurp(report));
  std::remove(report.c_str());
  CHECK(j["requests"]["sent"] == 3000);
  CHECK(j["requests"]["answered"] == 3000);
  CHECK(j["requests"]["errors"] == 0);
  CHECK(j["requests"]["lost"] == 0);
  CHECK(j["requests"]["duplicates_delivered"] == 0);
  CHECK(j["requests"].contains("duplicates_dropped"));
  CHECK(j["requests"].contains("retries"));
  for (auto key : {"p50", "p90", "p99", "max"}) CHECK(j["latency_ms"][key].is_number());
  CHECK(j["throughput_rps"].get<double>() > 0);
  REQUIRE(j["workers"].size() == 3);
  for (const auto& w : j["workers"]) {
    CAPTURE(w.dump());
    CHECK(w["served"].get<long>() >= 800);
    CHECK(w["served"].get<long>() <= 1200);
    CHECK(w["id"].is_string());
  }
  REQUIRE(j["timeline"].size() >= 1);
  long answered = 0;
  for (const auto& row : j["timeline"]) {
    for (auto key : {"t", "answered", "workers", "queue"}) CHECK(row.contains(key));
    answered += row["answered"].get<long>();
  }
  CHECK(answered == 3000);
  auto version = zyolo("--version");
  CHECK(has(version.out, "(allocator: " + j["run"]["allocator"].get<std::string>() + ")"));
}

// The default build runs on jemalloc (CMake ZYOLO_JEMALLOC; README "Benchmarks" says why); a
// sanitizer build on the sanitizer's allocator. zyolo says which, and it is the one that runs.
TEST_CASE("the allocator zyolo reports is the malloc that answers") {
  // This test program links what zyolo links, so its malloc is zyolo's.
  Dl_info info{};
  REQUIRE(::dladdr(reinterpret_cast<void*>(&::malloc), &info) != 0);
  const std::string malloc_from = info.dli_fname ? info.dli_fname : "";
  auto r = zyolo("--version");
  CAPTURE(malloc_from);
  CAPTURE(r.out);
  REQUIRE(r.code == 0);
#ifdef ZYOLO_JEMALLOC
  CHECK(has(malloc_from, "libjemalloc"));
  CHECK(has(r.out, "zyolo 0.1.0 (allocator: jemalloc 5."));
#elif defined(__SANITIZE_ADDRESS__)
  CHECK(has(r.out, "zyolo 0.1.0 (allocator: AddressSanitizer's malloc)"));
#elif defined(__SANITIZE_THREAD__)
  CHECK(has(r.out, "zyolo 0.1.0 (allocator: ThreadSanitizer's malloc)"));
#else
  CHECK_FALSE(has(malloc_from, "libjemalloc"));
  CHECK(has(r.out, "zyolo 0.1.0 (allocator: glibc malloc)"));
#endif
}

TEST_CASE("--help lists the run flags and exits 0") {
  auto r = zyolo("run --help");
  CHECK(r.code == 0);
  for (auto flag : {"--clients", "--workers", "--requests", "--duration", "--model", "--service-ms", "--config", "--report"})
    CHECK(has(r.out, flag));
  CHECK(zyolo("--help").code == 0);
}

// The one line of --help a flag has in `command` (from its name to the end of its description).
std::string help_line(const std::string& command, const std::string& flag) {
  const auto r = zyolo(command + " --help");
  std::istringstream in(r.out);
  for (std::string line; std::getline(in, line);) {
    const auto at = line.find(flag + " ");
    if (at != std::string::npos && line.find_first_not_of(' ') == at) return line.substr(at);
  }
  return "";
}

TEST_CASE("a setting's flag is one declaration: the same help in every subcommand, with its key and default") {
  const std::string workers = help_line("run", "--workers");
  CHECK(has(workers, "(run.workers; default 2)"));
  CHECK(help_line("workers", "--workers") == workers);
  for (const char* flag : {"--model", "--family", "--conf", "--nms", "--input-size", "--cv-threads"}) {
    INFO(flag);
    const std::string line = help_line("run", flag);
    CHECK(!line.empty());
    CHECK(help_line("workers", flag) == line);
    CHECK(help_line("detect", flag) == line);
  }
  CHECK(help_line("clients", "--clients") == help_line("run", "--clients"));
  CHECK(help_line("clients", "--requests") == help_line("run", "--requests"));
  CHECK(help_line("broker", "--curve") == help_line("workers", "--curve"));
  CHECK(help_line("workers", "--autoscale") == help_line("run", "--autoscale"));
  // The same bad value is the same error from a flag as from the file.
  auto flag = zyolo("run --cv-threads 999 --requests 5 --model none");
  TempFile file("cv.toml", "[worker]\ncv_threads = 999\n");
  auto key = zyolo("run --config " + file.path + " --requests 5 --model none");
  CHECK(flag.code == 2);
  CHECK(key.code == 2);
  CHECK(has(flag.err, "--cv-threads 999: must be between 0 and 256"));
  CHECK(has(key.err, "key 'worker.cv_threads' must be between 0 and 256"));
}

TEST_CASE("bad flags are usage errors that name the flag") {
  auto r = zyolo("run --clientz 3");
  CHECK(r.code == 2);
  CHECK(has(r.err + r.out, "--clientz"));
  r = zyolo("run --clients 0");
  CHECK(r.code == 2);
  CHECK(has(r.err + r.out, "--clients"));
  r = zyolo("run --workers many");
  CHECK(r.code == 2);
  CHECK(has(r.err + r.out, "--workers"));
  r = zyolo("run --transport udp");
  CHECK(r.code == 2);
  CHECK(has(r.err + r.out, "--transport"));
  r = zyolo("");
  CHECK(r.code == 2);
  r = zyolo("run --model none --requests 10 --report /nonexistent/dir/r.json");
  CHECK(r.code == 2);
  CHECK(has(r.err, "/nonexistent/dir/r.json"));
}

TEST_CASE("bad config files are errors that name the file and the key") {
  auto r = zyolo("run --config /nonexistent/zyolo.toml");
  CHECK(r.code == 2);
  CHECK(has(r.err, "/nonexistent/zyolo.toml"));

  TempFile unknown("unknown.toml", "[broker]\nheartbeat = 5\n");
  r = zyolo("run --config " + unknown.path);
  CHECK(r.code == 2);
  CHECK(has(r.err, unknown.path));
  CHECK(has(r.err, "unknown key 'broker.heartbeat'"));

  TempFile bad("bad.toml", "[client]\ndeadline_ms = -5\n");
  r = zyolo("run --config " + bad.path);
  CHECK(r.code == 2);
  CHECK(has(r.err, "client.deadline_ms"));

  TempFile broken("broken.toml", "[run\n");
  r = zyolo("run --config " + broken.path);
  CHECK(r.code == 2);
  CHECK(has(r.err, broken.path));
}

TEST_CASE("a config file sets values and flags override it") {
  TempFile cfg("good.toml", "[run]\nclients = 2\nworkers = 1\nrequests = 50\n[worker]\nmodel = \"none\"\n");
  auto r = zyolo("run --quiet --config " + cfg.path);
  INFO(r.out, r.err);
  CHECK(r.code == 0);
  CHECK(has(r.out, "2 clients, 1 workers"));
  CHECK(has(r.out, "answered 50 "));
  r = zyolo("run --quiet --config " + cfg.path + " --workers 2 --requests 30");
  CHECK(r.code == 0);
  CHECK(has(r.out, "2 clients, 2 workers"));
  CHECK(has(r.out, "answered 30 "));
}

TEST_CASE("--config given twice: the second file overlays the first, and each must exist") {
  TempFile first("first.toml", "[run]\nclients = 3\nworkers = 1\nrequests = 40\n[worker]\nmodel = \"none\"\n");
  TempFile second("second.toml", "[run]\nclients = 2\n");
  auto r = zyolo("run --quiet --config " + first.path + " --config " + second.path);
  INFO(r.out, r.err);
  CHECK(r.code == 0);
  CHECK(has(r.out, "2 clients, 1 workers"));  // clients from the second, workers from the first
  CHECK(has(r.out, "answered 40 "));
  r = zyolo("run --quiet --config " + second.path + " --config " + first.path);
  CHECK(r.code == 0);
  CHECK(has(r.out, "3 clients, 1 workers"));  // the other order: the first file's 3 wins
  r = zyolo("run --quiet --config " + first.path + " --config /nonexistent/zyolo.toml");
  CHECK(r.code == 2);
  CHECK(has(r.err, "/nonexistent/zyolo.toml"));
  // zyolo detect takes its images as positional arguments: --config takes one file, not them (had
  // it taken the image too, reading it as a config file would be the error).
  auto d = zyolo("detect --config " + second.path + " /nonexistent/image.jpg --model none");
  INFO(d.err);
  CHECK(d.code == 2);
  CHECK(has(d.err, "--model none"));
}

// An endpoint list (a broker pair's) that cannot work is an error before anything starts (exit 2,
// nothing bound, nothing connected): mixed transports, an empty item, an endpoint twice; a list
// where one endpoint is bound; and the same rules for a list in a config file, named by its key.
TEST_CASE("bad endpoint lists are errors that name the flag or the key") {
  struct Case {
    std::string args, says;
  };
  const std::vector<Case> cases = {
      {"clients --connect tcp://127.0.0.1:1,ipc:///tmp/zyolo-x.ipc --requests 1", "one transport"},
      {"workers --connect ipc:///tmp/zyolo-x.ipc,tcp://127.0.0.1:1", "one transport"},
      {"clients --connect tcp://127.0.0.1:1,,tcp://127.0.0.1:2 --requests 1", "item 2 of the list is empty"},
      {"workers --connect tcp://127.0.0.1:1,", "item 2 of the list is empty"},
      {"clients --connect tcp://127.0.0.1:1,tcp://127.0.0.1:1 --requests 1", "tcp://127.0.0.1:1 is in the list twice"},
      {"broker --frontend tcp://127.0.0.1:1,tcp://127.0.0.1:2", "binds one endpoint"},
  };
  for (const auto& c : cases) {
    auto r = zyolo(c.args + (c.args.starts_with("broker") ? "" : " --model none"));
    INFO(c.args, " -> ", r.out, r.err);
    CHECK(r.code == 2);
    CHECK(has(r.err, c.says));
    CHECK(has(r.err, c.args.starts_with("broker") ? "--frontend" : "--connect"));
    CHECK_FALSE(has(r.out, "ready"));
  }
  TempFile mixed("mixed.toml", "[endpoints]\ntcp_frontend = \"tcp://127.0.0.1:1,ipc:///tmp/zyolo-x.ipc\"\n");
  auto r = zyolo("clients --requests 1 --model none --config " + mixed.path);
  INFO(r.out, r.err);
  CHECK(r.code == 2);
  CHECK(has(r.err, "endpoints.tcp_frontend"));
  CHECK(has(r.err, "one transport"));
  TempFile pair("pair.toml", "[endpoints]\ninproc_backend = \"inproc://a,inproc://b\"\n");
  r = zyolo("run --transport inproc --requests 1 --model none --config " + pair.path);
  CHECK(r.code == 2);
  CHECK(has(r.err, "in-process broker"));
  TempFile control("control.toml", "[endpoints]\ntcp_control = \"tcp://127.0.0.1:1,tcp://127.0.0.1:2\"\n");
  r = zyolo("workers --model none --config " + control.path);
  CHECK(r.code == 2);
  CHECK(has(r.err, "endpoints.tcp_control"));
}
