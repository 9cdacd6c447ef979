// Image bytes: decoding with completeness checks (see detector.hpp: decode_image). libjpeg
// "decodes" a truncated JPEG, filling the rest with gray; these checks refuse it first.
#include <opencv2/imgcodecs.hpp>

#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "src/yolo/detector.hpp"

namespace zyolo {
namespace {

constexpr unsigned char kPngSignature[8] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
constexpr std::uint64_t kMaxImagePixels = 1ull << 27;  // ~134 Mpx: bigger JPEG/PNG are refused

// True if the JPEG's marker segments are intact and reach EOI; pixels receives width * height.
bool jpeg_complete(const unsigned char* p, size_t n, std::uint64_t& pixels) {
  size_t i = 2;  // after SOI
  for (;;) {
    while (i < n && p[i] != 0xFF) ++i;  // tolerate stray bytes between segments, as libjpeg does
    while (i < n && p[i] == 0xFF) ++i;  // fill bytes
    if (i >= n) return false;
    const unsigned m = p[i++];
    if (m == 0xD9) return true;                           // EOI
    if (m == 0x01 || (m >= 0xD0 && m <= 0xD7)) continue;  // TEM, RSTn: no length
    if (m == 0x00 || i + 2 > n) return false;
    const size_t len = (static_cast<size_t>(p[i]) << 8) | p[i + 1];
    if (len < 2 || len > n - i) return false;
    const bool sof = m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC;
    if (sof && len >= 7) {
      const std::uint64_t h = (static_cast<std::uint64_t>(p[i + 3]) << 8) | p[i + 4];
      const std::uint64_t w = (static_cast<std::uint64_t>(p[i + 5]) << 8) | p[i + 6];
      pixels = std::max(pixels, w * h);
    }
    i += len;
    if (m == 0xDA) {  // SOS: entropy-coded data runs to the next marker that is not RSTn
      for (;;) {
        const void* ff = i < n ? std::memchr(p + i, 0xFF, n - i) : nullptr;
        if (!ff) return false;
        i = static_cast<size_t>(static_cast<const unsigned char*>(ff) - p);
        if (i + 1 >= n) return false;
        const unsigned next = p[i + 1];
        if (next != 0x00 && next != 0xFF && !(next >= 0xD0 && next <= 0xD7)) break;
        ++i;
      }
    }
  }
}

// True if the PNG's chunks are intact up to IEND; pixels receives width * height from IHDR.
bool png_complete(const unsigned char* p, size_t n, std::uint64_t& pixels) {
  size_t i = 8;  // after the signature
  for (;;) {
    if (i > n || n - i < 12) return false;
    const std::uint64_t len =
        (static_cast<std::uint64_t>(p[i]) << 24) | (p[i + 1] << 16) | (p[i + 2] << 8) | p[i + 3];
    if (len > n - i - 12) return false;
    const unsigned char* type = p + i + 4;
    if (std::memcmp(type, "IHDR", 4) == 0 && len >= 8) {
      const unsigned char* d = p + i + 8;
      const std::uint64_t w =
          (static_cast<std::uint64_t>(d[0]) << 24) | (d[1] << 16) | (d[2] << 8) | d[3];
      const std::uint64_t h =
          (static_cast<std::uint64_t>(d[4]) << 24) | (d[5] << 16) | (d[6] << 8) | d[7];
      pixels = w * h;
    }
    if (std::memcmp(type, "IEND", 4) == 0) return true;
    i += 12 + static_cast<size_t>(len);
  }
}

}  // namespace

cv::Mat decode_image(const void* data, size_t size) {
  if (data == nullptr || size < 4 || size > static_cast<size_t>(std::numeric_limits<int>::max())) {
    return {};
  }
  const auto* p = static_cast<const unsigned char*>(data);
  std::uint64_t pixels = 0;
  if (p[0] == 0xFF && p[1] == 0xD8 && p[2] == 0xFF) {
    if (!jpeg_complete(p, size, pixels)) return {};
  } else if (size >= 8 && std::memcmp(p, kPngSignature, 8) == 0) {
    if (!png_complete(p, size, pixels)) return {};
  }
  if (pixels > kMaxImagePixels) return {};
  try {
    cv::Mat img = cv::imdecode(cv::_InputArray(p, static_cast<int>(size)), cv::IMREAD_COLOR);
    if (img.empty() || img.type() != CV_8UC3) return {};
    return img;
  } catch (const std::exception&) {  // cv::Exception, or bad_alloc for an absurd size
    return {};
  }
}

void prepare_image_codecs() {
  const cv::Mat pixel(8, 8, CV_8UC3, cv::Scalar(0, 128, 255));
  for (const char* ext : {".jpg", ".png"}) {
    std::vector<uchar> bytes;
    cv::imencode(ext, pixel, bytes);
    (void)cv::imdecode(bytes, cv::IMREAD_COLOR);
  }
  // Bytes no decoder claims: every registered decoder checks its signature once.
  const std::vector<uchar> junk(64, 0x5a);
  (void)cv::imdecode(junk, cv::IMREAD_COLOR);
}

}  // namespace zyolo
