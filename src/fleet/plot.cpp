// The run report drawn as a PNG by gnuplot: the timeline goes into a data file and the layout
// into a script, both in a private temporary folder; gnuplot runs there as a child process and
// draws plot.png, which is then moved to where the caller asked. Nothing here is shared between
// calls: each has its own folder and its own child.
#include "src/fleet/plot.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <system_error>
#include <vector>

extern char** environ;

namespace zyolo {
namespace {

namespace fs = std::filesystem;

// The files inside the temporary folder, named relative to it (gnuplot runs there).
constexpr const char* kDataFile = "run.dat";
constexpr const char* kScriptFile = "plot.gp";
constexpr const char* kPngFile = "plot.png";
constexpr const char* kOutFile = "gnuplot.out";
constexpr const char* kErrFile = "gnuplot.err";

constexpr const char* kInstallHint = "run scripts/deps (it installs gnuplot-nox)";

// A private folder (mode 0700, from mkdtemp) removed with everything in it when this goes.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "zyolo-plot-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr)
      throw std::runtime_error(
          fmt::format("cannot create a temporary folder {}: {}", pattern, std::strerror(errno)));
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// How a child process ended: spawn_error is the errno of a failed start (ENOENT: not on PATH);
// otherwise status is what waitpid gave.
struct ChildResult {
  int spawn_error = 0;
  int status = 0;

  bool ok() const { return spawn_error == 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0; }
  std::string describe() const {
    if (spawn_error != 0)
      return fmt::format("could not be started ({})", std::strerror(spawn_error));
    if (WIFEXITED(status)) return fmt::format("exited with status {}", WEXITSTATUS(status));
    if (WIFSIGNALED(status)) return fmt::format("was killed by signal {}", WTERMSIG(status));
    return "ended abnormally";
  }
};

// Runs gnuplot with `args` (found on PATH) and waits for it. Its stdin is /dev/null. With a
// `dir`, it runs in that folder and its stdout and stderr go to kOutFile and kErrFile there;
// without, they are discarded. posix_spawn, not system(): no shell sees the arguments.
ChildResult run_gnuplot(const std::vector<std::string>& args, const fs::path* dir) {
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>("gnuplot"));
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  // The actions run in order: after the chdir, the relative names are inside `dir`.
  if (dir != nullptr) posix_spawn_file_actions_addchdir_np(&actions, dir->c_str());
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  const char* out = dir != nullptr ? kOutFile : "/dev/null";
  const char* err = dir != nullptr ? kErrFile : "/dev/null";
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, out, O_WRONLY | O_CREAT | O_TRUNC,
                                   0600);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, err, O_WRONLY | O_CREAT | O_TRUNC,
                                   0600);

  ChildResult result;
  pid_t pid = 0;
  result.spawn_error = posix_spawnp(&pid, "gnuplot", &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (result.spawn_error != 0) return result;
  while (::waitpid(pid, &result.status, 0) < 0) {
    if (errno != EINTR) {
      result.spawn_error = errno;
      break;
    }
  }
  return result;
}

// The last `n` non-blank lines of a text file, each on its own indented line; empty if none.
std::string last_lines(const fs::path& path, std::size_t n) {
  std::ifstream in(path);
  std::deque<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    lines.push_back(line);
    if (lines.size() > n) lines.pop_front();
  }
  std::string text;
  for (const auto& line : lines) text += "\n  " + line;
  return text;
}

// `s` as a gnuplot single-quoted string: a quote is doubled, control characters become spaces.
std::string gp_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) {
    if (c == '\'')
      q += "''";
    else if (static_cast<unsigned char>(c) < 0x20)
      q += ' ';
    else
      q += c;
  }
  return q + "'";
}

// An upper bound for a panel's y axis: a little above the largest value, and never 0.
double y_top(double largest) {
  return largest > 0 ? largest * 1.15 : 1.0;
}

// Whether a row spans enough time for a throughput: the last row of a run covers only what was
// left of an interval, and a few answers over a few milliseconds would draw a false spike.
bool full_row(const Report& report, double dt) {
  const double interval = report.timeline.empty() ? 0 : report.timeline.front().t;
  return dt > 0 && dt >= 0.5 * interval;
}

// The timeline as columns: t, throughput (requests/s), p99 (ms), workers, clients, and with
// --autoscale the controller's demand and desired workers. A row too short for a throughput has
// none ("?", gnuplot's missing value); so has a row without a controller's evaluation.
std::string data_text(const Report& report) {
  std::string text = "# t_s throughput_rps p99_ms workers clients demand desired\n";
  double previous_t = 0;
  for (const auto& row : report.timeline) {
    const double dt = row.t - previous_t;
    const std::string rps =
        full_row(report, dt) ? fmt::format("{:.6g}", static_cast<double>(row.answered) / dt) : "?";
    const bool control = row.desired >= 0;
    text += fmt::format("{:.6g} {} {:.6g} {} {} {} {}\n", row.t, rps, row.p99_ms, row.workers,
                        row.clients, control ? fmt::format("{:.6g}", row.demand) : "?",
                        control ? std::to_string(row.desired) : "?");
    previous_t = row.t;
  }
  return text;
}

// Events: a dashed line each, and a fault's interval [t, end_t] shaded. Arrows and objects stay
// for every panel of the multiplot; the labels are unset after the first.
std::string event_marks(const Report& report) {
  std::string s;
  for (const auto& e : report.events) {
    if (e.end_t >= 0 && e.end_t > e.t)
      s += fmt::format(
          "set object rectangle from first {:.6g}, graph 0 to first {:.6g}, graph 1 behind "
          "fillcolor rgb '#f2b8b8' fillstyle solid 0.4 noborder\n",
          e.t, e.end_t);
    s += fmt::format(
        "set arrow from first {0:.6g}, graph 0 to first {0:.6g}, graph 1 nohead dashtype 2 "
        "linewidth 1.5 linecolor rgb '#b03030' front\n",
        e.t);
  }
  for (const auto& e : report.events)
    s += fmt::format(
        "set label {} at first {:.6g}, graph 0.93 left offset 0.6,0 boxed "
        "textcolor rgb '#b03030' front\n",
        gp_quote(e.kind), e.t);

  return s;
}

// The gnuplot script: three panels stacked on one time axis, every event a dashed line in each
// and a fault's interval shaded, the events' kinds written in the top panel.
std::string script_text(const Report& report) {
  double x_max = 0, rps_max = 0, p99_max = 0, count_max = 0;
  bool any_clients = false;
  double previous_t = 0;
  for (const auto& row : report.timeline) {
    x_max = std::max(x_max, row.t);
    if (full_row(report, row.t - previous_t))
      rps_max = std::max(rps_max, static_cast<double>(row.answered) / (row.t - previous_t));
    previous_t = row.t;
    p99_max = std::max(p99_max, row.p99_ms);
    count_max = std::max({count_max, static_cast<double>(row.workers), static_cast<double>(row.clients),
                          row.demand, static_cast<double>(row.desired)});
    any_clients = any_clients || row.clients != 0;
  }
  for (const auto& e : report.events) x_max = std::max({x_max, e.t, e.end_t});
  if (x_max <= 0) x_max = 1;

  std::string title = report.scenario.empty() ? "zyolo run" : report.scenario;
  title +=
      fmt::format("  |  sent {}, answered {}, lost {}", report.sent, report.answered, report.lost);
  if (report.errors != 0) title += fmt::format(", errors {}", report.errors);

  std::string s;
  // pngcairo draws smoother lines and text; plain png (libgd) is the fallback.
  s += "if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {\n"
       "  set terminal pngcairo size 1100,900 noenhanced font 'sans,10'\n"
       "} else {\n"
       "  set terminal png size 1100,900 noenhanced\n"
       "}\n";
  s += fmt::format("set output {}\n", gp_quote(kPngFile));
  s += "set datafile missing '?'\n";
  // Fixed side margins, so the three panels' time axes line up.
  s += "set lmargin 12\nset rmargin 4\n";
  s += fmt::format("set xrange [0:{:.6g}]\n", x_max);
  s += "set grid xtics ytics linetype 1 linewidth 1 linecolor rgb '#e0e0e0'\n";
  s += "set key top right opaque\n";
  s += "set format x ''\n";
  // The events' labels sit on an opaque box, so a line under one does not hide it.
  s += "set style textbox opaque noborder margins 1,1\n";

  s += event_marks(report);

  s += fmt::format("set multiplot layout 3,1 title {}\n", gp_quote(title));

  // A panel's curve: column `column` of the data file as a line.
  auto line_plot = [](int column, const char* colour, const char* title) {
    return fmt::format("plot {} using 1:{} with lines linewidth 2 linecolor rgb '{}' title '{}'\n",
                       gp_quote(kDataFile), column, colour, title);
  };
  s += "set ylabel 'throughput (requests/s)'\n";
  // Headroom above the curve for the events' labels.
  s += fmt::format("set yrange [0:{:.6g}]\n", y_top(rps_max) * 1.15);
  s += line_plot(2, "#1f77b4", "answered/s");
  s += "unset label\n";

  s += "set ylabel 'p99 latency (ms)'\n";
  s += fmt::format("set yrange [0:{:.6g}]\n", y_top(p99_max));
  s += line_plot(3, "#ff7f0e", "p99");

  s += "set format x '%g'\nset xlabel 'time (s)'\n";
  s += "set ylabel 'registered'\n";
  s += fmt::format("set yrange [0:{:.6g}]\n", y_top(count_max));
  // Counts: whole-number tics while they are few.
  s += count_max <= 12 ? "set ytics 1\n" : "set format y '%.0f'\n";
  s += fmt::format(
      "plot {} using 1:4 with steps linewidth 2 linecolor rgb '#2ca02c' "
      "title 'workers'",
      gp_quote(kDataFile));
  if (any_clients)
    s += ", '' using 1:5 with steps linewidth 2 dashtype 3 linecolor rgb '#9467bd' "
         "title 'clients'";
  if (report.autoscale.enabled)
    s += ", '' using 1:7 with steps linewidth 2 dashtype 2 linecolor rgb '#d62728' "
         "title 'desired (controller)', '' using 1:6 with lines linewidth 1 linecolor rgb '#7f7f7f' "
         "title 'demand (in system)'";
  s += "\nunset multiplot\nset output\n";
  return s;
}

// Writes `text` to `path`, or throws naming it.
void write_file(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  out.close();
  if (!out) throw std::runtime_error(fmt::format("cannot write {}", path.string()));
}

}  // namespace

bool gnuplot_available(std::string* why) {
  const ChildResult r = run_gnuplot({"--version"}, nullptr);
  if (r.ok()) return true;
  if (why != nullptr) {
    *why = r.spawn_error == ENOENT
               ? fmt::format("gnuplot is not installed: {}", kInstallHint)
               : fmt::format("gnuplot --version {}: {}", r.describe(), kInstallHint);
  }
  return false;
}

void write_plot(const Report& report, const std::string& png_path) {
  const auto fail = [&](const std::string& what) {
    return std::runtime_error(fmt::format("cannot plot to {}: {}", png_path, what));
  };
  if (report.timeline.empty()) throw fail("the report has no timeline");

  TempDir dir;
  write_file(dir.path() / kDataFile, data_text(report));
  write_file(dir.path() / kScriptFile, script_text(report));

  const ChildResult r = run_gnuplot({kScriptFile}, &dir.path());
  if (r.spawn_error == ENOENT)
    throw fail(fmt::format("gnuplot is not installed: {}", kInstallHint));
  const std::string said = last_lines(dir.path() / kErrFile, 6);
  if (!r.ok())
    throw fail(fmt::format("gnuplot {}{}", r.describe(), said.empty() ? "" : ":" + said));

  const fs::path drawn = dir.path() / kPngFile;
  std::error_code ec;
  const auto size = fs::file_size(drawn, ec);
  if (ec || size == 0)
    throw fail(fmt::format("gnuplot drew no image{}", said.empty() ? "" : ":" + said));

  // Moved whole into place: a reader never sees half a PNG. Across file systems, copied.
  fs::rename(drawn, png_path, ec);
  if (ec == std::errc::cross_device_link) {
    ec.clear();
    fs::copy_file(drawn, png_path, fs::copy_options::overwrite_existing, ec);
  }
  if (ec) throw fail(ec.message());
  if (!fs::is_regular_file(png_path, ec) || fs::file_size(png_path, ec) != size)
    throw fail("the image is not there after writing it");
}

}  // namespace zyolo
