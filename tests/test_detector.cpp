// Detector tests: every model in shared/models on every image in shared/images against the
// reference decoder's numbers (tests/data/reference_detections.json, written by
// tests/data/make_reference.py from shared/models/tools/verify.py); family recognition and
// explicit families; start-up errors that name the path; decode_image on bytes that are not an
// image; the JSON form of detections. Missing shared data fails loudly, it is never skipped.
#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "src/yolo/detector.hpp"

#ifndef ZYOLO_SHARED_DIR
#error "define ZYOLO_SHARED_DIR as a string literal: the path of the shared/ folder"
#endif

namespace fs = std::filesystem;
using zyolo::Detection;
using zyolo::Detector;
using zyolo::DetectorOptions;
using zyolo::ModelFamily;

namespace {

constexpr float kConfTolerance = 0.02f;
constexpr float kEdgeTolerancePx = 3.0f;
const char* const kImages[] = {"dog.jpg", "horses.jpg", "person.jpg"};

// The shared/ folder (models/ and images/), which must exist.
fs::path shared_dir() {
  const fs::path dir(ZYOLO_SHARED_DIR);
  REQUIRE_MESSAGE(fs::is_directory(dir), "shared data folder is missing: " << dir.string());
  return dir;
}

// A path that must name an existing file; fails the test naming it otherwise.
std::string require_file(const fs::path& p) {
  REQUIRE_MESSAGE(fs::is_regular_file(p), "required test file is missing: " << p.string());
  return p.string();
}

// tests/data/ of this source tree (beside this file, unless ZYOLO_TEST_DATA_DIR says otherwise).
fs::path test_data_dir() {
#ifdef ZYOLO_TEST_DATA_DIR
  return fs::path(ZYOLO_TEST_DATA_DIR);
#else
  return fs::path(__FILE__).parent_path() / "data";
#endif
}

// The bytes of a file that must exist.
std::string read_bytes(const fs::path& p) {
  std::ifstream in(require_file(p), std::ios::binary);
  REQUIRE_MESSAGE(in.good(), "cannot open " << p.string());
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// The reference detections (see tests/data/make_reference.py).
nlohmann::json load_reference() {
  const fs::path p = test_data_dir() / "reference_detections.json";
  const nlohmann::json ref = nlohmann::json::parse(read_bytes(p), nullptr, false);
  REQUIRE_MESSAGE(!ref.is_discarded(), "reference file is not valid JSON: " << p.string());
  REQUIRE_MESSAGE(ref.contains("models"), "reference file has no \"models\": " << p.string());
  return ref;
}

// A shared image, decoded with decode_image (the path the workers use).
cv::Mat load_image(const std::string& name) {
  const std::string bytes = read_bytes(shared_dir() / "images" / name);
  cv::Mat img = zyolo::decode_image(bytes.data(), bytes.size());
  REQUIRE_MESSAGE(!img.empty(), "decode_image failed on " << name);
  return img;
}

// Options for a shared model file, with the reference's thresholds.
DetectorOptions options_for(const std::string& file, ModelFamily family = ModelFamily::Auto) {
  DetectorOptions o;
  o.model_path = require_file(shared_dir() / "models" / file);
  o.family = family;
  o.conf_threshold = 0.25f;
  o.nms_threshold = 0.45f;
  return o;
}

// True when our detection matches a reference one: same class, close confidence, close edges.
bool matches(const Detection& d, const nlohmann::json& r) {
  const auto& b = r.at("xyxy");
  return d.class_id == r.at("class_id").get<int>() &&
         d.class_name == r.at("class").get<std::string>() &&
         std::abs(d.confidence - r.at("confidence").get<float>()) <= kConfTolerance &&
         std::abs(d.x - b[0].get<float>()) <= kEdgeTolerancePx &&
         std::abs(d.y - b[1].get<float>()) <= kEdgeTolerancePx &&
         std::abs(d.x + d.w - b[2].get<float>()) <= kEdgeTolerancePx &&
         std::abs(d.y + d.h - b[3].get<float>()) <= kEdgeTolerancePx;
}

// Checks that ours and the reference list are the same set: same count, and each reference
// detection matched by a distinct one of ours.
void check_same_detections(const std::vector<Detection>& ours, const nlohmann::json& ref,
                           const std::string& label) {
  const std::string ours_json = zyolo::detections_to_json(ours);
  CHECK_MESSAGE(ours.size() == ref.size(),
                label << ": " << ours.size() << " detections, reference has " << ref.size()
                      << "\n  ours: " << ours_json << "\n  reference: " << ref.dump());
  std::vector<bool> used(ours.size(), false);
  for (const auto& r : ref) {
    bool found = false;
    for (size_t i = 0; i < ours.size() && !found; ++i) {
      if (!used[i] && matches(ours[i], r)) used[i] = found = true;
    }
    CHECK_MESSAGE(found,
                  label << ": no match for reference " << r.dump() << "\n  ours: " << ours_json);
  }
}

// Loads one model (as the reference file names it) and compares it on every image.
void check_model_against_reference(const std::string& key, ModelFamily family) {
  const nlohmann::json ref = load_reference();
  REQUIRE_MESSAGE(ref["models"].contains(key), "reference has no model " << key);
  const auto& m = ref["models"][key];
  Detector det(options_for(m.at("file").get<std::string>(), family));
  CHECK(zyolo::family_name(det.family()) == m.at("family").get<std::string>());
  CHECK(det.input_size() == cv::Size(m.at("input").get<int>(), m.at("input").get<int>()));
  CHECK(det.num_classes() == 80);
  for (const char* image : kImages) {
    REQUIRE_MESSAGE(m["images"].contains(image), "reference has no " << key << " / " << image);
    const auto& r = m["images"][image];
    const cv::Mat img = load_image(image);
    CHECK(img.cols == r.at("width").get<int>());
    CHECK(img.rows == r.at("height").get<int>());
    zyolo::StageTimes t;
    const auto dets = det.detect(img, &t);
    CHECK(t.infer_ms > 0);
    check_same_detections(dets, r.at("detections"), key + " on " + image);
  }
}

// The message of the std::runtime_error that loading opts throws ("" if it does not throw).
std::string load_error(const DetectorOptions& opts) {
  try {
    Detector det(opts);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return {};
}

// A fresh temporary folder, removed when the value goes out of scope.
struct TempDir {
  fs::path path = fs::temp_directory_path() / ("zyolo_test_detector_" + std::to_string(::getpid()));
  TempDir() {
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
};

// Writes text to a file.
void write_file(const fs::path& p, const std::string& text) {
  std::ofstream out(p, std::ios::binary);
  out << text;
  REQUIRE_MESSAGE(out.good(), "cannot write " << p.string());
}

}  // namespace

TEST_CASE("shared data and the reference cover every model and image") {
  const fs::path models = shared_dir() / "models";
  for (const char* image : kImages) require_file(shared_dir() / "images" / image);
  const nlohmann::json ref = load_reference();
  CHECK(ref.at("conf_threshold").get<double>() == doctest::Approx(0.25));
  CHECK(ref.at("nms_threshold").get<double>() == doctest::Approx(0.45));
  std::vector<std::string> stems_in_reference;
  for (const auto& [key, m] : ref["models"].items()) {
    require_file(models / m.at("file").get<std::string>());
    stems_in_reference.push_back(fs::path(m.at("file").get<std::string>()).stem().string());
  }
  int model_files = 0;
  for (const auto& e : fs::directory_iterator(models)) {
    const std::string ext = e.path().extension().string();
    if (ext != ".onnx" && ext != ".cfg") continue;
    ++model_files;
    const std::string stem = e.path().stem().string();
    CHECK_MESSAGE(std::count(stems_in_reference.begin(), stems_in_reference.end(), stem) == 1,
                  "model " << e.path().string() << " has no reference detections: re-run "
                           << "tests/data/make_reference.py");
  }
  CHECK(model_files == 5);
}

TEST_CASE("yolov8n.onnx (auto) matches the reference decoder") {
  check_model_against_reference("yolov8n", ModelFamily::Auto);
}

TEST_CASE("yolov5n.onnx (auto) matches the reference decoder") {
  check_model_against_reference("yolov5n", ModelFamily::Auto);
}

TEST_CASE("yolox_nano.onnx (auto) matches the reference decoder") {
  check_model_against_reference("yolox_nano", ModelFamily::Auto);
}

TEST_CASE("yolo-fastest-1.1-xl .cfg (auto) matches the reference decoder") {
  check_model_against_reference("yolo-fastest-1.1-xl", ModelFamily::Auto);
}

TEST_CASE("yolo-fastest-1.1 .weights (auto) matches the reference decoder") {
  check_model_against_reference("yolo-fastest-1.1", ModelFamily::Auto);
}

TEST_CASE("an explicit family loads each model and matches the reference on dog.jpg") {
  const nlohmann::json ref = load_reference();
  const cv::Mat dog = load_image("dog.jpg");
  const std::pair<const char*, ModelFamily> cases[] = {
      {"yolov8n.onnx", ModelFamily::YoloV8},
      {"yolov5n.onnx", ModelFamily::YoloV5},
      {"yolox_nano.onnx", ModelFamily::YoloX},
      {"yolo-fastest-1.1-xl.weights", ModelFamily::Darknet},
      {"yolo-fastest-1.1.cfg", ModelFamily::Darknet},
  };
  for (const auto& c : cases) {
    const std::string file = c.first;
    const ModelFamily family = c.second;
    CAPTURE(file);
    Detector det(options_for(file, family));
    CHECK(det.family() == family);
    const std::string stem = fs::path(file).stem().string();
    for (const auto& [key, m] : ref["models"].items()) {
      if (fs::path(m.at("file").get<std::string>()).stem().string() != stem) continue;
      check_same_detections(det.detect(dog), m["images"]["dog.jpg"]["detections"],
                            file + " as " + std::string(zyolo::family_name(family)));
    }
  }
}

TEST_CASE("a family that does not fit the model is refused at start-up, naming the path") {
  const auto v8 = options_for("yolov8n.onnx", ModelFamily::YoloX);
  CHECK(load_error(v8).find(v8.model_path) != std::string::npos);
  const auto yolox = options_for("yolox_nano.onnx", ModelFamily::YoloV8);
  CHECK(load_error(yolox).find(yolox.model_path) != std::string::npos);
  const auto cfg = options_for("yolo-fastest-1.1.cfg", ModelFamily::YoloV5);
  CHECK(load_error(cfg).find(cfg.model_path) != std::string::npos);
  const auto onnx_as_darknet = options_for("yolox_nano.onnx", ModelFamily::Darknet);
  CHECK(load_error(onnx_as_darknet).find(onnx_as_darknet.model_path) != std::string::npos);
}

TEST_CASE("missing, unsupported or broken model files throw a message naming the path") {
  TempDir tmp;
  DetectorOptions o;

  o.model_path = (tmp.path / "no_such_model.onnx").string();
  CHECK(load_error(o).find(o.model_path) != std::string::npos);

  o.model_path = (tmp.path / "no_such_dir" / "model.cfg").string();
  CHECK(load_error(o).find(o.model_path) != std::string::npos);

  o.model_path = "";
  CHECK_THROWS_AS(Detector{o}, std::runtime_error);

  o.model_path = (tmp.path / "model.tflite").string();
  write_file(o.model_path, "not a model");
  CHECK(load_error(o).find(o.model_path) != std::string::npos);

  o.model_path = (tmp.path / "garbage.onnx").string();
  write_file(o.model_path, "this is text, not an ONNX protobuf");
  CHECK(load_error(o).find(o.model_path) != std::string::npos);

  o = options_for("yolo-fastest-1.1.cfg");
  o.input_size = 33;  // not a multiple of 32
  CHECK_THROWS_AS(Detector{o}, std::runtime_error);
}

TEST_CASE("a darknet file whose partner is missing throws naming the missing path") {
  TempDir tmp;
  const fs::path cfg = tmp.path / "lonely.cfg";
  fs::copy_file(require_file(shared_dir() / "models" / "yolo-fastest-1.1.cfg"), cfg);
  DetectorOptions o;
  o.model_path = cfg.string();
  const std::string err = load_error(o);
  CHECK_MESSAGE(err.find((tmp.path / "lonely.weights").string()) != std::string::npos, err);

  const fs::path weights = tmp.path / "alone.weights";
  write_file(weights, "x");
  o.model_path = weights.string();
  const std::string err2 = load_error(o);
  CHECK_MESSAGE(err2.find((tmp.path / "alone.cfg").string()) != std::string::npos, err2);
}

TEST_CASE("class names come from a names file; a missing names file throws naming it") {
  TempDir tmp;
  std::string names;
  for (int i = 0; i < 80; ++i) names += "thing" + std::to_string(i) + "\r\n";
  write_file(tmp.path / "my.names", names);
  auto o = options_for("yolo-fastest-1.1-xl.cfg");
  o.names_path = (tmp.path / "my.names").string();
  Detector det(o);
  const auto dets = det.detect(load_image("dog.jpg"));
  REQUIRE(!dets.empty());
  for (const auto& d : dets) CHECK(d.class_name == "thing" + std::to_string(d.class_id));

  o.names_path = (tmp.path / "missing.names").string();
  CHECK(load_error(o).find(o.names_path) != std::string::npos);
}

TEST_CASE("detect handles empty, gray and BGRA images; times; a moved detector works") {
  Detector det(options_for("yolo-fastest-1.1.cfg"));
  CHECK(det.detect(cv::Mat()).empty());
  CHECK(det.detect(cv::Mat(10, 10, CV_32FC3, cv::Scalar::all(0))).empty());  // not 8-bit
  const cv::Mat dog = load_image("dog.jpg");
  cv::Mat gray, bgra;
  cv::cvtColor(dog, gray, cv::COLOR_BGR2GRAY);
  cv::cvtColor(dog, bgra, cv::COLOR_BGR2BGRA);
  CHECK_NOTHROW(det.detect(gray));
  CHECK(det.detect(bgra).size() == det.detect(dog).size());
  CHECK(det.detect(cv::Mat(1, 1, CV_8UC3, cv::Scalar::all(0))).empty());

  zyolo::StageTimes t;
  t.decode_ms = 7;
  det.detect(dog, &t);
  CHECK(t.decode_ms == 7);  // left to the caller
  CHECK(t.pre_ms > 0);
  CHECK(t.infer_ms > 0);
  CHECK(t.post_ms >= 0);

  Detector moved(std::move(det));
  CHECK(moved.family() == ModelFamily::Darknet);
  CHECK(moved.input_size() == cv::Size(320, 320));
  CHECK(!moved.detect(dog).empty());
}

TEST_CASE("decode_image returns an empty Mat for bytes that are not a whole image") {
  const std::string jpeg = read_bytes(shared_dir() / "images" / "dog.jpg");
  CHECK(zyolo::decode_image(nullptr, 0).empty());
  CHECK(zyolo::decode_image(jpeg.data(), 0).empty());
  CHECK(zyolo::decode_image(jpeg.data(), jpeg.size() / 2).empty());  // truncated JPEG
  CHECK(zyolo::decode_image(jpeg.data(), jpeg.size() - 2).empty());  // JPEG without its EOI
  CHECK(zyolo::decode_image(jpeg.data(), 3).empty());
  CHECK(zyolo::decode_image(jpeg.data(), 600).empty());  // headers only

  std::mt19937 rng(12345);
  std::string random(100000, '\0');
  for (char& c : random) c = static_cast<char>(rng() & 0xFF);
  CHECK(zyolo::decode_image(random.data(), random.size()).empty());
  random[0] = static_cast<char>(0xFF);  // random bytes behind a JPEG signature
  random[1] = static_cast<char>(0xD8);
  random[2] = static_cast<char>(0xFF);
  CHECK(zyolo::decode_image(random.data(), random.size()).empty());

  const std::string text = "GET / HTTP/1.1\r\nHost: example\r\n\r\nthis is not an image";
  CHECK(zyolo::decode_image(text.data(), text.size()).empty());

  const cv::Mat img = zyolo::decode_image(jpeg.data(), jpeg.size());
  REQUIRE(!img.empty());
  CHECK(img.size() == cv::Size(768, 576));
  CHECK(img.type() == CV_8UC3);

  std::vector<uchar> png;
  REQUIRE(cv::imencode(".png", img, png));
  const cv::Mat from_png = zyolo::decode_image(png.data(), png.size());
  CHECK(from_png.size() == img.size());
  CHECK(zyolo::decode_image(png.data(), png.size() / 2).empty());  // truncated PNG
  CHECK(zyolo::decode_image(png.data(), png.size() - 4).empty());
}

TEST_CASE("family names parse and print") {
  for (auto f : {ModelFamily::Auto, ModelFamily::YoloV8, ModelFamily::YoloV5, ModelFamily::YoloX,
                 ModelFamily::Darknet}) {
    CHECK(zyolo::parse_family(zyolo::family_name(f)) == f);
  }
  CHECK(zyolo::parse_family("YOLOv8") == ModelFamily::YoloV8);
  CHECK(!zyolo::parse_family("yolov9").has_value());
  CHECK(!zyolo::parse_family("").has_value());
}

TEST_CASE("detections_to_json gives an array of class_id, class, confidence, box") {
  CHECK(zyolo::detections_to_json({}) == "[]");
  const std::vector<Detection> dets = {{16, "dog", 0.92736f, 131.2f, 219.04f, 177.5f, 322.0f},
                                       {1, "a \"quoted\" name", 0.5f, -1.0f, 2.0f, 3.0f, 4.0f}};
  const std::string text = zyolo::detections_to_json(dets);
  CHECK(text.rfind("[{\"class_id\":16,\"class\":\"dog\",\"confidence\":0.9274,\"box\":[131.2,219.0,"
                   "177.5,322.0]}",
                   0) == 0);
  const auto j = nlohmann::json::parse(text);
  REQUIRE(j.size() == 2);
  CHECK(j[1]["class"] == "a \"quoted\" name");
  CHECK(j[1]["box"][0].get<double>() == doctest::Approx(-1.0));
}
