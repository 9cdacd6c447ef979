// The one main() of every test executable.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <opencv2/core/utility.hpp>

int main(int argc, char** argv) {
#if defined(__SANITIZE_THREAD__)
  // OpenCV's parallel loops run on Debian's TBB, which is not instrumented: TSan cannot see its
  // hand-offs and reports them falsely, as it would libzmq's. Under TSan, OpenCV runs its loops
  // on the calling thread instead; nothing of zyolo's own is hidden by this.
  cv::setNumThreads(0);
#endif
  return doctest::Context(argc, argv).run();
}
