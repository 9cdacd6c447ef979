// `zyolo detect IMAGE...`: runs one Detector locally on image files, without a broker or threads
// of ours. Precedence: flags > --config FILE > defaults. Prints a human summary or JSON Lines,
// and can draw the boxes into copies of the images (--annotate DIR).
//
// Exit codes: 0 every image was detected; 1 (kExitUnclean) some image could not be read, decoded,
// detected or annotated (each is named on stderr, the others still run); 2 bad flag, config or
// model path; 3 a model that exists but cannot be loaded.
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <nlohmann/json.hpp>
#include <opencv2/core/utility.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <optional>
#include <set>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "src/cli/cli.hpp"
#include "src/cli/commands.hpp"
#include "src/cli/setting_flags.hpp"
#include "src/config/config.hpp"
#include "src/yolo/detector.hpp"
#include "src/yolo/models.hpp"

namespace zyolo {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// Flags of `zyolo detect`; each detector flag that was given overrides its worker.* key.
struct DetectFlags {
  std::vector<std::string> images;
  std::vector<std::string> config_files;
  SettingFlags settings;
  std::string annotate_dir;
  bool json = false;
};

// The detector options of the configured model; detection needs a real one, so "none" and an
// "auto" that found nothing are ConfigErrors.
DetectorOptions require_model(const Config& config) {
  ModelChoice choice = resolve_model(config);
  if (choice.detector) return *choice.detector;
  if (config.worker.model == "none")
    throw ConfigError(
        "--model none: detect needs a YOLO model; pass --model PATH (.onnx, or a darknet "
        ".cfg with its .weights beside it)");
  throw ConfigError(
      fmt::format("no YOLO model found (worker.model is auto; looked for {}); pass --model PATH",
                  config.worker.auto_models.empty() ? "nothing: worker.auto_models is empty"
                                                    : config.worker.auto_models));
}

// Creates the --annotate folder if missing and checks that it can be written; ConfigError naming
// it otherwise. Runs before the model loads, so a typo costs nothing.
void prepare_annotate_dir(const std::string& dir) {
  std::error_code ec;
  if (fs::exists(dir, ec) && !fs::is_directory(dir, ec))
    throw ConfigError(fmt::format("--annotate {}: exists and is not a directory", dir));
  fs::create_directories(dir, ec);
  if (ec) throw ConfigError(fmt::format("--annotate {}: cannot create it ({})", dir, ec.message()));
  if (!fs::is_directory(dir)) throw ConfigError(fmt::format("--annotate {}: not a directory", dir));
  if (::access(dir.c_str(), W_OK | X_OK) != 0)
    throw ConfigError(
        fmt::format("--annotate {}: cannot write there ({})", dir, std::strerror(errno)));
}

// The bytes of the file at `path`, or an error message saying why it cannot be read.
struct FileBytes {
  std::string bytes;
  std::string error;  // empty: read
};

FileBytes read_file(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) return {{}, "cannot read (a directory)"};
  std::ifstream in(path, std::ios::binary);
  if (!in) return {{}, fmt::format("cannot read ({})", std::strerror(errno))};
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) return {{}, "cannot read (I/O error)"};
  return {std::move(bytes), {}};
}

double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

double round_to(double v, int decimals) {
  const double scale = std::pow(10.0, decimals);
  return std::round(v * scale) / scale;
}

// One JSON Lines record: {"image", "detections", "times_ms"}.
std::string json_line(const std::string& image, const std::vector<Detection>& dets,
                      const StageTimes& t) {
  nlohmann::ordered_json o;
  o["image"] = image;
  o["detections"] = nlohmann::ordered_json::parse(detections_to_json(dets));
  o["times_ms"] = {{"decode", round_to(t.decode_ms, 3)},
                   {"pre", round_to(t.pre_ms, 3)},
                   {"inference", round_to(t.infer_ms, 3)},
                   {"post", round_to(t.post_ms, 3)}};
  return o.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

// The human summary of one image: a header line, then one line per detection.
std::string human_text(const std::string& image, const std::vector<Detection>& dets,
                       const StageTimes& t) {
  std::string text = fmt::format(
      "{}: {} detections (decode {:.1f} ms, pre {:.1f} ms, inference {:.1f} ms, post {:.1f} ms)\n",
      image, dets.size(), t.decode_ms, t.pre_ms, t.infer_ms, t.post_ms);
  for (const Detection& d : dets)
    text += fmt::format("  {}  conf {:.3f}  box {},{} - {},{}\n", d.class_name, d.confidence,
                        std::lround(d.x), std::lround(d.y), std::lround(d.x + d.w),
                        std::lround(d.y + d.h));
  return text;
}

// A stable, well-saturated colour for a class id.
cv::Scalar class_colour(int class_id) {
  static const cv::Scalar kPalette[] = {
      {56, 56, 255},  {151, 157, 255}, {31, 112, 255}, {29, 178, 255},  {49, 210, 207},
      {10, 249, 72},  {23, 204, 146},  {134, 219, 61}, {52, 147, 26},   {187, 212, 0},
      {168, 153, 44}, {255, 194, 0},   {147, 69, 52},  {255, 115, 100}, {236, 24, 0},
      {255, 56, 132}, {133, 0, 82},    {255, 56, 203}};
  const auto n = static_cast<int>(std::size(kPalette));
  return kPalette[((class_id % n) + n) % n];
}

// Draws each detection's box and a "class conf" label onto `image`: all boxes first, then the
// labels from the weakest to the strongest, so a strong label is never hidden under a weak one.
void draw_detections(cv::Mat& image, const std::vector<Detection>& dets) {
  const int thickness =
      std::max(1, static_cast<int>(std::lround(std::max(image.cols, image.rows) / 400.0)));
  const double font_scale = std::max(0.4, thickness / 3.0);
  const int font = cv::FONT_HERSHEY_SIMPLEX;
  auto corners = [](const Detection& d) {
    return std::pair{
        cv::Point(static_cast<int>(std::lround(d.x)), static_cast<int>(std::lround(d.y))),
        cv::Point(static_cast<int>(std::lround(d.x + d.w)),
                  static_cast<int>(std::lround(d.y + d.h)))};
  };
  for (const Detection& d : dets) {
    const auto [p1, p2] = corners(d);
    cv::rectangle(image, p1, p2, class_colour(d.class_id), thickness, cv::LINE_AA);
  }
  for (auto it = dets.rbegin(); it != dets.rend(); ++it) {
    const Detection& d = *it;
    const cv::Point p1 = corners(d).first;
    const std::string label = fmt::format("{} {:.2f}", d.class_name, d.confidence);
    int baseline = 0;
    const cv::Size size = cv::getTextSize(label, font, font_scale, 1, &baseline);
    // Above the box if there is room, else just inside its top edge; never off the image.
    const int x = std::clamp(p1.x, 0, std::max(0, image.cols - size.width));
    int top = p1.y - size.height - baseline;
    if (top < 0) top = std::max(0, p1.y);
    top = std::min(top, std::max(0, image.rows - size.height - baseline));
    cv::rectangle(image, cv::Rect(x, top, size.width, size.height + baseline),
                  class_colour(d.class_id), cv::FILLED);
    cv::putText(image, label, cv::Point(x, top + size.height), font, font_scale,
                cv::Scalar(255, 255, 255), 1, cv::LINE_AA);
  }
}

// Where the annotated copy of `image` goes: DIR/<stem><ext>, keeping the extension when OpenCV
// can write it (else .jpg), with -2, -3... when two images of one call share a name.
fs::path annotate_path(const std::string& dir, const std::string& image,
                       std::set<fs::path>& taken) {
  const fs::path in(image);
  std::string ext = in.extension().string();
  if (ext.empty() || !cv::haveImageWriter("x" + ext)) ext = ".jpg";
  const std::string stem = in.stem().empty() ? "image" : in.stem().string();
  fs::path out = fs::path(dir) / (stem + ext);
  for (int n = 2; taken.count(out) > 0; ++n)
    out = fs::path(dir) / fmt::format("{}-{}{}", stem, n, ext);
  taken.insert(out);
  return out;
}

// Writes the annotated copy; an error message on failure, empty on success.
std::string write_annotated(const fs::path& out, cv::Mat image,
                            const std::vector<Detection>& dets) {
  draw_detections(image, dets);
  try {
    if (cv::imwrite(out.string(), image)) return {};
    return fmt::format("--annotate: cannot write {}", out.string());
  } catch (const cv::Exception& e) {
    return fmt::format("--annotate: cannot write {} ({})", out.string(), e.msg);
  }
}

int run_detect_command(const DetectFlags& flags) {
  Config config = config_from_files(flags.config_files);
  flags.settings.apply(config);
  validate_worker(config);
  const DetectorOptions options = require_model(config);
  if (!flags.annotate_dir.empty()) prepare_annotate_dir(flags.annotate_dir);

  cv::setNumThreads(config.worker.cv_threads);
  Detector detector(options);  // throws std::runtime_error naming the model: exit 3

  std::set<fs::path> annotated;
  int failed = 0;
  auto fail = [&](const std::string& image, const std::string& why) {
    fmt::print(stderr, "zyolo: {}: {}\n", image, why);
    ++failed;
  };
  for (const std::string& image : flags.images) {
    const FileBytes file = read_file(image);
    if (!file.error.empty()) {
      fail(image, file.error);
      continue;
    }
    StageTimes times;
    const auto start = Clock::now();
    const cv::Mat bgr = decode_image(file.bytes.data(), file.bytes.size());
    times.decode_ms = ms_since(start);
    if (bgr.empty()) {
      fail(image, "not a decodable image");
      continue;
    }
    std::vector<Detection> dets;
    try {
      dets = detector.detect(bgr, &times);
    } catch (const cv::Exception& e) {
      fail(image, fmt::format("detection failed ({})", e.msg));
      continue;
    }
    fmt::print("{}",
               flags.json ? json_line(image, dets, times) + "\n" : human_text(image, dets, times));
    std::fflush(stdout);
    if (!flags.annotate_dir.empty()) {
      const fs::path out = annotate_path(flags.annotate_dir, image, annotated);
      if (std::string error = write_annotated(out, bgr.clone(), dets); !error.empty())
        fail(image, error);
      else
        fmt::print(stderr, "zyolo: {}: annotated copy written to {}\n", image, out.string());
    }
  }
  if (failed > 0) {
    fmt::print(stderr, "zyolo: {} of {} images failed\n", failed, flags.images.size());
    return kExitUnclean;
  }
  return kExitOk;
}

}  // namespace

Subcommand add_detect_command(CLI::App& root) {
  auto flags = std::make_shared<DetectFlags>();
  auto& f = *flags;
  auto* detect = root.add_subcommand(
      "detect", "Detect objects in images with a YOLO model, locally (no broker, no fleet)");
  detect->footer(
      "Prints per image a line 'IMAGE: N detections (decode/pre/inference/post times)' and one\n"
      "line per detection, or with --json one JSON object per image (JSON Lines). An image that\n"
      "cannot be read or decoded is named on stderr; the others still run, and the exit code is "
      "1.\n"
      "Exit codes: 0 all images detected, 1 some image failed, 2 bad flag/config/model path,\n"
      "3 the model could not be loaded.");
  detect->add_option("IMAGE", f.images, "Image files (JPEG, PNG, ...) to detect objects in")
      ->required()
      ->type_name("");
  detect->add_flag("--json", f.json,
                   "One JSON object per image on stdout (JSON Lines): image, detections, times_ms");
  detect
      ->add_option("--annotate", f.annotate_dir,
                   "Write a copy of each image with its boxes and labels drawn to DIR "
                   "(created if missing)")
      ->type_name("DIR");
  add_config_flag(*detect, f.config_files);
  f.settings.add(*detect, {ZYOLO_DETECTOR_KEYS});
  return {detect, [flags] { return run_detect_command(*flags); }};
}

}  // namespace zyolo
