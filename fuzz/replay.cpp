// Replays inputs through the fuzz target (fuzz/fuzz_codec.cpp) without libFuzzer, so the suite's
// own compiler and sanitizer run it: in the AddressSanitizer+UBSan pass every input goes through
// every decoder once under ASan and UBSan as the suite builds them.
//
//   fuzz_codec_replay PATH...     each PATH a file, or a folder whose files are each one input
//
// Like libFuzzer it calls LLVMFuzzerInitialize first (with ZYOLO_FUZZ_SEEDS set, the target writes
// its seed corpus and exits). A crash is the target's abort; an input that cannot be read, or no
// input at all, is a failure too (exit 1): a replay of nothing proves nothing.
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv);
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size);

namespace {

namespace fs = std::filesystem;

// Feeds one file to the target; false if it cannot be read.
bool replay(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return false;
  const std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  LLVMFuzzerInitialize(&argc, &argv);
  long replayed = 0;
  for (int i = 1; i < argc; ++i) {
    std::vector<fs::path> files;
    std::error_code error;
    if (fs::is_directory(argv[i], error)) {
      for (const auto& entry : fs::directory_iterator(argv[i], error))
        if (entry.is_regular_file()) files.push_back(entry.path());
    } else {
      files.emplace_back(argv[i]);
    }
    if (error) {
      std::fprintf(stderr, "fuzz_codec_replay: %s: %s\n", argv[i], error.message().c_str());
      return 1;
    }
    for (const auto& f : files) {
      if (!replay(f)) {
        std::fprintf(stderr, "fuzz_codec_replay: cannot read %s\n", f.c_str());
        return 1;
      }
      ++replayed;
    }
  }
  if (replayed == 0) {
    std::fprintf(stderr, "fuzz_codec_replay: no input to replay\n");
    return 1;
  }
  std::printf("fuzz_codec_replay: %ld inputs through every decoder, no fault\n", replayed);
  return 0;
}
