// The run report drawn as a PNG with gnuplot (--plot FILE.png): throughput, p99 latency and the
// workers (and clients) registered over time, with the scenario's events marked on each panel.
#pragma once

#include <string>

#include "src/fleet/report.hpp"

namespace zyolo {

// Draws `report`'s timeline and events into `png_path` by running gnuplot (pngcairo if it has
// it, else png) on files in a private temporary folder, which it removes. `png_path` is written
// only once gnuplot has drawn the whole image. Throws std::runtime_error naming `png_path` when the
// report has no timeline, gnuplot is missing or fails (with the last lines it printed), or the file
// cannot be written. Blocks until gnuplot has finished.
void write_plot(const Report& report, const std::string& png_path);

// Whether gnuplot can be run (`gnuplot --version` succeeds). When not, and `why` is given, says
// why in one line and what to install.
bool gnuplot_available(std::string* why = nullptr);

}  // namespace zyolo
