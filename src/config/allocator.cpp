#include "src/config/allocator.hpp"

#ifdef ZYOLO_JEMALLOC
#include <jemalloc/jemalloc.h>
#endif

namespace zyolo {

std::string allocator_name() {
#ifdef ZYOLO_JEMALLOC
  const char* version = nullptr;
  size_t size = sizeof version;
  if (mallctl("version", static_cast<void*>(&version), &size, nullptr, 0) == 0 && version)
    return std::string("jemalloc ") + version;
#endif
#if defined(__SANITIZE_ADDRESS__)
  return "AddressSanitizer's malloc";
#elif defined(__SANITIZE_THREAD__)
  return "ThreadSanitizer's malloc";
#else
  return "glibc malloc";
#endif
}

}  // namespace zyolo
