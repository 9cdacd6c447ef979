// Image sources for clients: see images.hpp.
#include "src/yolo/images.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <random>
#include <sstream>

#include "src/config/config.hpp"

namespace zyolo {

std::vector<Image> load_images(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    throw ConfigError(fmt::format("client.images (--images) {}: no such folder", dir));
  std::vector<Image> images;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    std::string ext = entry.path().extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), ::tolower);
    if (!entry.is_regular_file() || (ext != ".jpg" && ext != ".jpeg" && ext != ".png")) continue;
    std::ifstream in(entry.path(), std::ios::binary);
    if (!in) throw ConfigError(fmt::format("--images: cannot read {}", entry.path().string()));
    std::stringstream bytes;
    bytes << in.rdbuf();
    images.push_back({entry.path().filename().string(), bytes.str()});
  }
  if (images.empty())
    throw ConfigError(fmt::format("client.images (--images) {}: no .jpg or .png files", dir));
  std::sort(images.begin(), images.end(),
            [](const Image& a, const Image& b) { return a.name < b.name; });
  return images;
}

std::vector<Image> synthesize_images(int count, unsigned seed) {
  std::mt19937 rng(seed);
  auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  std::vector<Image> images;
  for (int i = 0; i < count; ++i) {
    cv::Mat img(480, 640, CV_8UC3);
    for (int y = 0; y < img.rows; ++y)
      img.row(y).setTo(cv::Scalar(y * 255 / img.rows, pick(0, 255) / 4 + 96, 255 - y * 255 / img.rows));
    for (int k = 0; k < 6; ++k) {
      const cv::Scalar colour(pick(0, 255), pick(0, 255), pick(0, 255));
      const cv::Point a(pick(0, 600), pick(0, 440)), b(a.x + pick(20, 200), a.y + pick(20, 200));
      if (k % 2)
        cv::rectangle(img, a, b, colour, cv::FILLED);
      else
        cv::circle(img, a, pick(10, 90), colour, cv::FILLED);
    }
    std::vector<uchar> jpeg;
    cv::imencode(".jpg", img, jpeg);
    images.push_back({fmt::format("synthetic-{}.jpg", i), std::string(jpeg.begin(), jpeg.end())});
  }
  return images;
}

}  // namespace zyolo
