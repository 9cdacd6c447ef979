// Detector implementation: model loading, family resolution and inference. What it reads from
// model files is model_files.*, the decoders and NMS decoders.*, image bytes image_bytes.cpp.
#include "src/yolo/detector.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cassert>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <opencv2/dnn.hpp>
#include <opencv2/imgproc.hpp>
#include <stdexcept>
#include <utility>

#include "src/yolo/decoders.hpp"
#include "src/yolo/model_files.hpp"

namespace zyolo {
namespace {

namespace fs = std::filesystem;
using namespace yolo;  // the detector's internals: decoders.hpp, model_files.hpp
using Clock = std::chrono::steady_clock;

constexpr int kDefaultSizeV8V5 = 640;
constexpr int kDefaultSizeYoloX = 416;

// Milliseconds from t0 to t1.
double ms_between(Clock::time_point t0, Clock::time_point t1) {
  return std::chrono::duration<double, std::milli>(t1 - t0).count();
}

// Rounds v to the given number of decimals (for compact JSON).
double round_to(double v, int decimals) {
  const double f = std::pow(10.0, decimals);
  return std::round(v * f) / f;
}

}  // namespace

// ---------------------------------------------------------------------------------------------

std::optional<ModelFamily> parse_family(std::string_view s) {
  const std::string l = lower(std::string(s));
  if (l == "auto") return ModelFamily::Auto;
  if (l == "yolov8") return ModelFamily::YoloV8;
  if (l == "yolov5") return ModelFamily::YoloV5;
  if (l == "yolox") return ModelFamily::YoloX;
  if (l == "darknet") return ModelFamily::Darknet;
  return std::nullopt;
}

std::string_view family_name(ModelFamily f) {
  switch (f) {
    case ModelFamily::Auto:
      return "auto";
    case ModelFamily::YoloV8:
      return "yolov8";
    case ModelFamily::YoloV5:
      return "yolov5";
    case ModelFamily::YoloX:
      return "yolox";
    case ModelFamily::Darknet:
      return "darknet";
  }
  return "unknown";
}

// The loaded network and the settings resolved at load.
struct Detector::Impl {
  cv::dnn::Net net;
  std::vector<std::string> out_names;
  std::vector<std::string> names;  // at least one per class
  std::string model_path;
  ModelFamily family = ModelFamily::Auto;
  cv::Size input;
  float conf = 0.25f;
  float nms = 0.45f;
  int num_classes = 0;

  // The network input for an 8-bit BGR image; ratio receives the letterbox scale (1 for darknet).
  cv::Mat preprocess(const cv::Mat& bgr, double& ratio) const {
    ratio = 1.0;
    switch (family) {
      case ModelFamily::Darknet:  // plain resize, RGB, /255
        return cv::dnn::blobFromImage(bgr, 1.0 / 255, input, cv::Scalar(), true, false);
      case ModelFamily::YoloX:  // letterbox, BGR, 0..255
        return cv::dnn::blobFromImage(letterbox(bgr, input, ratio), 1.0, cv::Size(), cv::Scalar(),
                                      false, false);
      default:  // v8 / v5: letterbox, RGB, /255
        return cv::dnn::blobFromImage(letterbox(bgr, input, ratio), 1.0 / 255, cv::Size(),
                                      cv::Scalar(), true, false);
    }
  }

  // Runs the network on a blob; returns its outputs as contiguous float Mats.
  std::vector<cv::Mat> forward(const cv::Mat& blob) {
    std::vector<cv::Mat> outs;
    net.setInput(blob);
    net.forward(outs, out_names);
    for (cv::Mat& o : outs) {
      if (!o.isContinuous()) o = o.clone();
    }
    return outs;
  }

  // Runs a gray (pad-coloured) image through the network: the warm-up inference at load.
  std::vector<cv::Mat> warm_up() {
    const cv::Mat gray(input, CV_8UC3, cv::Scalar::all(kPadValue));
    double ratio = 1;
    try {
      return forward(preprocess(gray, ratio));
    } catch (const cv::Exception& e) {
      throw std::runtime_error(fmt::format("model '{}' does not run at input {}x{}: {}", model_path,
                                           input.width, input.height, e.err));
    }
  }

  // Sets up the backend and output names of a freshly read net.
  void prepare_net(const std::string& what) {
    if (net.empty())
      throw std::runtime_error(fmt::format("OpenCV DNN read an empty network from {}", what));
    net.setPreferableBackend(cv::dnn::DNN_BACKEND_OPENCV);
    net.setPreferableTarget(cv::dnn::DNN_TARGET_CPU);
    out_names = net.getUnconnectedOutLayersNames();
    if (out_names.empty()) throw std::runtime_error(fmt::format("network {} has no outputs", what));
  }

  // Loads a darknet .cfg + .weights pair (path is either one) and checks its outputs.
  void load_darknet(const fs::path& path, int input_size) {
    fs::path cfg = path, weights = path;
    cfg.replace_extension(".cfg");
    weights.replace_extension(".weights");
    for (const fs::path& p : {cfg, weights}) {
      if (!fs::is_regular_file(p)) {
        throw std::runtime_error(
            fmt::format("darknet model '{}' needs '{}' beside it, which is missing", path.string(),
                        p.string()));
      }
    }
    const auto cfg_text = read_whole_file(cfg);
    if (!cfg_text)
      throw std::runtime_error(fmt::format("cannot read darknet cfg '{}'", cfg.string()));
    const auto cfg_size = darknet_cfg_size(*cfg_text);
    if (input_size > 0) {
      input = cv::Size(input_size, input_size);
    } else if (cfg_size) {
      input = *cfg_size;
    } else {
      throw std::runtime_error(
          fmt::format("darknet cfg '{}' has no [net] width/height", cfg.string()));
    }
    const std::string what = fmt::format("'{}' + '{}'", cfg.string(), weights.string());
    try {
      net = cv::dnn::readNetFromDarknet(cfg.string(), weights.string());
    } catch (const cv::Exception& e) {
      throw std::runtime_error(fmt::format("cannot load darknet model {}: {}", what, e.err));
    }
    prepare_net(what);
    family = ModelFamily::Darknet;
    const auto outs = warm_up();
    for (const cv::Mat& o : outs) {
      const int cols = o.dims >= 2 ? o.size[o.dims - 1] : 0;
      if (o.type() != CV_32F || cols < 6 || (num_classes != 0 && cols - 5 != num_classes)) {
        throw std::runtime_error(fmt::format(
            "darknet model {}: an output is not [rows, 5+classes] like a [yolo] layer's", what));
      }
      num_classes = cols - 5;
    }
  }

  // Loads an ONNX model, resolves its family (Auto: from its output) and input size.
  void load_onnx(const fs::path& path, ModelFamily requested, int input_size) {
    const auto bytes = read_whole_file(path);
    if (!bytes) throw std::runtime_error(fmt::format("cannot read model file '{}'", path.string()));
    const auto dims = onnx_input_dims(*bytes);
    try {
      net = cv::dnn::readNetFromONNX(bytes->data(), bytes->size());
    } catch (const cv::Exception& e) {
      throw std::runtime_error(
          fmt::format("cannot load ONNX model '{}' with OpenCV DNN: {}", path.string(), e.err));
    }
    prepare_net(fmt::format("'{}'", path.string()));
    if (input_size > 0) {
      input = cv::Size(input_size, input_size);
    } else if (dims && dims->size() == 4 && (*dims)[2] > 0 && (*dims)[3] > 0 &&
               (*dims)[2] <= std::numeric_limits<int>::max() &&
               (*dims)[3] <= std::numeric_limits<int>::max()) {
      input = cv::Size(static_cast<int>((*dims)[3]), static_cast<int>((*dims)[2]));
    } else {
      const int s = requested == ModelFamily::YoloX ? kDefaultSizeYoloX : kDefaultSizeV8V5;
      input = cv::Size(s, s);
    }
    // The family decides the pre-processing, so the warm-up runs with a provisional one; the
    // output shape does not depend on it.
    family = requested == ModelFamily::Auto ? ModelFamily::YoloV8 : requested;
    const auto outs = warm_up();
    const OutShape shape = onnx_out_shape(outs.front());
    if (requested == ModelFamily::Auto) {
      const auto found = recognise_onnx(outs.front(), shape, input);
      if (!found) {
        throw std::runtime_error(fmt::format(
            "model '{}': output {} is not a YOLOv8/YOLOv5/YOLOX layout; give its family explicitly",
            path.string(), shape.ok ? fmt::format("[1, {}, {}]", shape.a, shape.b) : "?"));
      }
      family = *found;
    } else if (const auto err = onnx_layout_error(requested, shape, input); !err.empty()) {
      throw std::runtime_error(fmt::format("model '{}' is not a {} model: {}", path.string(),
                                           family_name(requested), err));
    }
    num_classes = family == ModelFamily::YoloV8 ? shape.a - 4 : shape.b - 5;
  }
};

Detector::Detector(const DetectorOptions& opts) : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.model_path = opts.model_path;
  m.conf = opts.conf_threshold;
  m.nms = opts.nms_threshold;
  if (!(opts.conf_threshold >= 0 && opts.conf_threshold <= 1)) {
    throw std::runtime_error(
        fmt::format("conf_threshold {} is not in [0, 1]", opts.conf_threshold));
  }
  if (!(opts.nms_threshold > 0 && opts.nms_threshold <= 1)) {
    throw std::runtime_error(fmt::format("nms_threshold {} is not in (0, 1]", opts.nms_threshold));
  }
  if (opts.input_size < 0 || opts.input_size % 32 != 0) {
    throw std::runtime_error(
        fmt::format("input_size {} is not 0 or a positive multiple of 32", opts.input_size));
  }
  if (opts.model_path.empty()) throw std::runtime_error("no model path given");
  const fs::path path(opts.model_path);
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) {
    throw std::runtime_error(fmt::format("model file '{}' does not exist", opts.model_path));
  }
  const std::string ext = lower(path.extension().string());
  const bool darknet = ext == ".cfg" || ext == ".weights";
  if (!darknet && ext != ".onnx") {
    throw std::runtime_error(
        fmt::format("model file '{}' is not supported: expected .onnx, or darknet .cfg/.weights",
                    opts.model_path));
  }
  if (darknet && opts.family != ModelFamily::Auto && opts.family != ModelFamily::Darknet) {
    throw std::runtime_error(fmt::format("model file '{}' is a darknet model, not {}",
                                         opts.model_path, family_name(opts.family)));
  }
  if (!darknet && opts.family == ModelFamily::Darknet) {
    throw std::runtime_error(fmt::format(
        "model file '{}' is ONNX; darknet needs a .cfg/.weights pair", opts.model_path));
  }
  if (darknet) {
    m.load_darknet(path, opts.input_size);
  } else {
    m.load_onnx(path, opts.family, opts.input_size);
  }
  m.names = load_names(opts.names_path, m.num_classes);
}

Detector::~Detector() = default;
Detector::Detector(Detector&&) noexcept = default;
Detector& Detector::operator=(Detector&&) noexcept = default;

std::vector<Detection> Detector::detect(const cv::Mat& bgr_image, StageTimes* times) {
  assert(impl_ && "detect() on a moved-from Detector");
  Impl& m = *impl_;
  const auto t0 = Clock::now();
  const cv::Mat bgr = as_bgr8(bgr_image);
  if (bgr.empty()) return {};
  double ratio = 1;
  const cv::Mat blob = m.preprocess(bgr, ratio);
  const auto t1 = Clock::now();
  const std::vector<cv::Mat> outs = m.forward(blob);
  const auto t2 = Clock::now();

  std::vector<Candidate> cands;
  if (m.family == ModelFamily::Darknet) {
    decode_darknet(outs, bgr.size(), m.conf, cands);
  } else {
    const cv::Mat& out = outs.front();
    const OutShape shape = onnx_out_shape(out);
    if (m.family == ModelFamily::YoloV8) {
      decode_v8(out, shape, ratio, m.conf, cands);
    } else {
      decode_v5_yolox(out, shape, m.family == ModelFamily::YoloX, m.input, ratio, m.conf, cands);
    }
  }
  std::vector<Detection> dets;
  for (const Candidate& c : nms_per_class(std::move(cands), m.conf, m.nms)) {
    dets.push_back({c.cls, m.names[static_cast<size_t>(c.cls)], c.score,
                    static_cast<float>(c.box.x), static_cast<float>(c.box.y),
                    static_cast<float>(c.box.width), static_cast<float>(c.box.height)});
  }
  const auto t3 = Clock::now();
  if (times) {
    times->pre_ms = ms_between(t0, t1);
    times->infer_ms = ms_between(t1, t2);
    times->post_ms = ms_between(t2, t3);
  }
  return dets;
}

ModelFamily Detector::family() const {
  return impl_->family;
}
cv::Size Detector::input_size() const {
  return impl_->input;
}
int Detector::num_classes() const {
  return impl_->num_classes;
}
const std::string& Detector::model_path() const {
  return impl_->model_path;
}

std::string detections_to_json(const std::vector<Detection>& dets) {
  return detections_json(dets).dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

nlohmann::ordered_json detections_json(const std::vector<Detection>& dets) {
  nlohmann::ordered_json arr = nlohmann::ordered_json::array();
  for (const Detection& d : dets) {
    nlohmann::ordered_json o;
    o["class_id"] = d.class_id;
    o["class"] = d.class_name;
    o["confidence"] = round_to(d.confidence, 4);
    o["box"] = {round_to(d.x, 1), round_to(d.y, 1), round_to(d.w, 1), round_to(d.h, 1)};
    arr.push_back(std::move(o));
  }
  return arr;
}

}  // namespace zyolo
