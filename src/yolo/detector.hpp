// Detector: one YOLO model loaded with OpenCV DNN (CPU), and the image decoding in front of it.
// Families: YOLOv8 and YOLOv5 ONNX exports, raw-grid YOLOX ONNX, and darknet .cfg/.weights.
// Pre-processing and box decoding match shared/models/tools/verify.py, so the numbers agree.
//
// Errors, by tier: a missing, unreadable or unsupported model throws std::runtime_error from the
// constructor (start-up only); bytes that are not an image give an empty cv::Mat (an error value);
// detect() may throw cv::Exception only if inference itself fails.
//
// Threads: a Detector is owned and used by one thread (it holds a cv::dnn::Net, which is not
// thread-safe). It is move-only, so two threads can never share one by copying it.
#pragma once

#include <cstddef>
#include <memory>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace zyolo {

enum class ModelFamily { Auto, YoloV8, YoloV5, YoloX, Darknet };

// Parses "auto", "yolov8", "yolov5", "yolox" or "darknet"; anything else gives nullopt.
std::optional<ModelFamily> parse_family(std::string_view s);

// The lower-case name that parse_family() accepts for f.
std::string_view family_name(ModelFamily f);

struct DetectorOptions {
  // .onnx, or darknet .cfg or .weights (the partner with the same stem must sit beside it).
  std::string model_path;
  // Auto: recognised from the model (file type + output shape).
  ModelFamily family = ModelFamily::Auto;
  float conf_threshold = 0.25f;
  float nms_threshold = 0.45f;
  // 0: the model's own (ONNX input dims, else 640 for v8/v5 and 416 for yolox; darknet: the
  // cfg's width/height). Otherwise a multiple of 32, used as a square input.
  int input_size = 0;
  // Optional class-names file (one name a line); empty: the built-in COCO 80 names.
  std::string names_path;
};

struct Detection {
  int class_id;
  std::string class_name;
  float confidence;
  float x, y, w, h;  // box in ORIGINAL image pixels, top-left + size (not clipped to the image)
};

struct StageTimes {
  double decode_ms = 0, pre_ms = 0, infer_ms = 0, post_ms = 0;
};

class Detector {
 public:
  // Loads the model once and runs one warm-up inference; throws std::runtime_error with a message
  // naming the path on a missing/unreadable/unsupported model or names file.
  explicit Detector(const DetectorOptions& opts);
  ~Detector();
  Detector(Detector&&) noexcept;
  Detector& operator=(Detector&&) noexcept;
  Detector(const Detector&) = delete;
  Detector& operator=(const Detector&) = delete;

  // Detects objects in a BGR (or gray/BGRA) 8-bit image; an empty or non-8-bit image gives no
  // detections. Fills pre/infer/post of *times when given (decode_ms is left to the caller).
  // Detections are sorted by confidence, highest first. Throws cv::Exception only if inference
  // fails.
  std::vector<Detection> detect(const cv::Mat& bgr_image, StageTimes* times = nullptr);

  // The family in use (never Auto: Auto is resolved at load).
  ModelFamily family() const;

  // The network input size in pixels (width x height).
  cv::Size input_size() const;

  // The number of classes the model outputs.
  int num_classes() const;

  // The model file that was loaded (as given in the options).
  const std::string& model_path() const;

 private:
  struct Impl;  // the cv::dnn::Net and the resolved settings, private to detector.cpp
  std::unique_ptr<Impl> impl_;  // unique_ptr: a moved-from Detector never shares the net
};

// Decodes encoded image bytes (JPEG/PNG/...) to 8-bit BGR. Returns an empty Mat if the bytes are
// not a decodable image (empty, truncated, random, text); never throws.
cv::Mat decode_image(const void* data, size_t size);

// Makes OpenCV set up its image codecs (a lazily built registry) on the calling thread. Call it
// once, before worker threads decode images concurrently for the first time.
void prepare_image_codecs();

// Formats detections as a JSON array:
// [{"class_id":16,"class":"dog","confidence":0.927,"box":[x,y,w,h]},...] (confidence to 4
// decimals, box in original image pixels to 1 decimal).
std::string detections_to_json(const std::vector<Detection>& dets);
// The same array as a JSON value, for callers that embed it in a larger document.
nlohmann::ordered_json detections_json(const std::vector<Detection>& dets);

}  // namespace zyolo
