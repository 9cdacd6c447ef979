// Which malloc this process runs on. zyolo links jemalloc by default (CMake option
// ZYOLO_JEMALLOC): with glibc's malloc, a detector built and run in a worker thread gets its
// tensors from that thread's own arena and inferred about 13% slower than the same detector on
// the main thread (README, "Benchmarks"); with jemalloc the two are the same.
#pragma once

#include <string>

namespace zyolo {

// "jemalloc 5.3.0-..." when jemalloc answers for this process's malloc; else the sanitizer's
// (a sanitizer build replaces malloc) or "glibc malloc".
// Asks the allocator itself (mallctl), so it reports what runs, not what was asked for.
std::string allocator_name();

}  // namespace zyolo
