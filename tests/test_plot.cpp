// The --plot renderer: a hand-built report drawn by gnuplot into a real PNG, into a path with a
// space and a quote; an unwritable path and an empty timeline refused with the path named.
#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>

#include "src/fleet/plot.hpp"

using namespace zyolo;
namespace fs = std::filesystem;

namespace {

// A private folder for the test's PNGs, removed at the end.
struct TempDir {
  fs::path path;
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "zyolo-test-plot-XXXXXX").string();
    REQUIRE(::mkdtemp(pattern.data()) != nullptr);
    path = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path, ignored);
  }
};

// Twenty half-second rows: a worker crashes at 3 s and is back at 5 s, the broker is killed at
// 7 s and restarted at 8 s, with throughput, latency and workers following.
Report sample_report() {
  Report r;
  r.scenario = "crash_and_restart 'demo'";
  r.sent = 2000;
  r.answered = 1985;
  r.lost = 3;
  r.errors = 12;
  for (int i = 1; i <= 20; ++i) {
    TimelineRow row;
    row.t = 0.5 * i;
    const bool crashed = row.t > 3.0 && row.t <= 5.0;
    const bool broker_down = row.t > 7.0 && row.t <= 8.0;
    row.workers = broker_down ? 0 : crashed ? 1 : 2;
    row.answered = broker_down ? 0 : crashed ? 50 : 100 + i;
    row.p99_ms = broker_down ? 0 : crashed ? 40.0 + i : 12.0 + 0.3 * i;
    row.queue = crashed ? 3 : 0;
    row.clients = 4;
    r.timeline.push_back(row);
  }
  FaultEvent crash;
  crash.t = 3.0;
  crash.kind = "crash-worker";
  crash.detail = "w1";
  crash.end_t = 5.0;
  crash.first_answer_s = 0.1;
  crash.recover90_s = 0.6;
  r.events.push_back(crash);
  FaultEvent kill;
  kill.t = 7.0;
  kill.kind = "kill-broker";
  kill.end_t = 8.0;
  r.events.push_back(kill);
  return r;
}

std::string read_all(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// The message of the std::runtime_error that write_plot throws, or "" if it does not throw.
std::string plot_error(const Report& report, const std::string& path) {
  try {
    write_plot(report, path);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("gnuplot is installed") {
  std::string why;
  // A missing gnuplot fails every test here: it is a dependency, never a reason to skip.
  REQUIRE_MESSAGE(gnuplot_available(&why), why);
  CHECK(why.empty());
}

TEST_CASE("a report is drawn as a PNG") {
  std::string why;
  REQUIRE_MESSAGE(gnuplot_available(&why), why);
  TempDir dir;
  const fs::path png = dir.path / "with space" / "it's a plot.png";
  fs::create_directories(png.parent_path());

  write_plot(sample_report(), png.string());

  const std::string bytes = read_all(png);
  REQUIRE(bytes.size() > 8);
  CHECK(bytes.compare(0, 8, "\x89PNG\r\n\x1a\n") == 0);
  CHECK(bytes.size() > 8 * 1024);
  // Nothing left behind beside it.
  CHECK(std::distance(fs::directory_iterator(png.parent_path()), fs::directory_iterator()) == 1);

  SUBCASE("again over the same file") {
    write_plot(sample_report(), png.string());
    CHECK(read_all(png).compare(0, 8, "\x89PNG\r\n\x1a\n") == 0);
  }
}

TEST_CASE("a report with no events, no clients and no scenario is drawn") {
  std::string why;
  REQUIRE_MESSAGE(gnuplot_available(&why), why);
  TempDir dir;
  Report r = sample_report();
  r.events.clear();
  r.scenario.clear();
  for (auto& row : r.timeline) row.clients = 0;
  const fs::path png = dir.path / "plain.png";
  write_plot(r, png.string());
  CHECK(read_all(png).compare(0, 8, "\x89PNG\r\n\x1a\n") == 0);
}

TEST_CASE("an unwritable path is an error that names it") {
  std::string why;
  REQUIRE_MESSAGE(gnuplot_available(&why), why);
  const std::string path = "/nonexistent-dir/x.png";
  const std::string message = plot_error(sample_report(), path);
  INFO("message: ", message);
  CHECK(message.find(path) != std::string::npos);
  CHECK_FALSE(fs::exists(path));
}

TEST_CASE("a report with no timeline is an error that names the path") {
  TempDir dir;
  const std::string path = (dir.path / "empty.png").string();
  const std::string message = plot_error(Report{}, path);
  INFO("message: ", message);
  CHECK(message.find(path) != std::string::npos);
  CHECK(message.find("no timeline") != std::string::npos);
  CHECK_FALSE(fs::exists(path));
}
