// Detector implementation: model loading and family recognition, pre-processing (letterbox or plain
// resize), output decoding per family, per-class NMS; image decoding with completeness checks.
#include "src/yolo/detector.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cassert>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <nlohmann/json.hpp>
#include <opencv2/dnn.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <set>
#include <stdexcept>
#include <utility>

namespace zyolo {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// COCO's 80 class names, in the order of coco.names (an immutable table).
constexpr std::array<std::string_view, 80> kCocoNames = {
    "person",        "bicycle",       "car",           "motorbike",
    "aeroplane",     "bus",           "train",         "truck",
    "boat",          "traffic light", "fire hydrant",  "stop sign",
    "parking meter", "bench",         "bird",          "cat",
    "dog",           "horse",         "sheep",         "cow",
    "elephant",      "bear",          "zebra",         "giraffe",
    "backpack",      "umbrella",      "handbag",       "tie",
    "suitcase",      "frisbee",       "skis",          "snowboard",
    "sports ball",   "kite",          "baseball bat",  "baseball glove",
    "skateboard",    "surfboard",     "tennis racket", "bottle",
    "wine glass",    "cup",           "fork",          "knife",
    "spoon",         "bowl",          "banana",        "apple",
    "sandwich",      "orange",        "broccoli",      "carrot",
    "hot dog",       "pizza",         "donut",         "cake",
    "chair",         "sofa",          "pottedplant",   "bed",
    "diningtable",   "toilet",        "tvmonitor",     "laptop",
    "mouse",         "remote",        "keyboard",      "cell phone",
    "microwave",     "oven",          "toaster",       "sink",
    "refrigerator",  "book",          "clock",         "vase",
    "scissors",      "teddy bear",    "hair drier",    "toothbrush"};

constexpr double kPadValue = 114;                     // letterbox fill (v8, v5, yolox)
constexpr std::array<int, 3> kStrides = {8, 16, 32};  // output strides of the YOLO heads
constexpr int kDefaultSizeV8V5 = 640;
constexpr int kDefaultSizeYoloX = 416;
constexpr unsigned char kPngSignature[8] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
constexpr std::uint64_t kMaxImagePixels = 1ull << 27;  // ~134 Mpx: bigger JPEG/PNG are refused

// Milliseconds from t0 to t1.
double ms_between(Clock::time_point t0, Clock::time_point t1) {
  return std::chrono::duration<double, std::milli>(t1 - t0).count();
}

// ASCII lower-case copy of s.
std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

// s without leading and trailing white space (including a Windows '\r').
std::string_view trim(std::string_view s) {
  const char* ws = " \t\r\n\f\v";
  const auto b = s.find_first_not_of(ws);
  if (b == std::string_view::npos) return {};
  return s.substr(b, s.find_last_not_of(ws) - b + 1);
}

// The whole content of a file, or nullopt if it cannot be opened or read.
std::optional<std::string> read_whole_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) return std::nullopt;
  std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) return std::nullopt;
  return data;
}

// ---------------------------------------------------------------------------------------------
// ONNX input dims: a minimal, bounds-checked protobuf reader (OpenCV 4.6 has no API for them).
// ModelProto.graph=7; GraphProto.initializer=5, .input=11; TensorProto.name=8; ValueInfoProto
// .name=1, .type=2; TypeProto.tensor_type=1; Tensor.shape=2; TensorShapeProto.dim=1; Dimension
// .dim_value=1 (int64), .dim_param=2 (symbolic: dynamic).

// A cursor over protobuf wire-format bytes; every read checks the bounds.
struct PbReader {
  const unsigned char* p = nullptr;
  const unsigned char* end = nullptr;

  // Reads a base-128 varint.
  bool varint(std::uint64_t& v) {
    v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (p >= end) return false;
      const unsigned b = *p++;
      v |= static_cast<std::uint64_t>(b & 0x7f) << shift;
      if (!(b & 0x80)) return true;
    }
    return false;
  }
  // Reads a field key: its number and wire type.
  bool key(std::uint64_t& num, unsigned& wire) {
    std::uint64_t k = 0;
    if (!varint(k)) return false;
    num = k >> 3;
    wire = static_cast<unsigned>(k & 7);
    return true;
  }
  // Reads a length-delimited field into a sub-reader.
  bool sub(PbReader& out) {
    std::uint64_t n = 0;
    if (!varint(n) || n > static_cast<std::uint64_t>(end - p)) return false;
    out = {p, p + n};
    p += n;
    return true;
  }
  // Skips a field's value of the given wire type.
  bool skip(unsigned wire) {
    std::uint64_t v = 0;
    PbReader s;
    switch (wire) {
      case 0:
        return varint(v);
      case 1:
        return fixed(8);
      case 2:
        return sub(s);
      case 5:
        return fixed(4);
      default:
        return false;  // groups are not used by ONNX
    }
  }
  // Skips n fixed bytes.
  bool fixed(std::ptrdiff_t n) {
    if (end - p < n) return false;
    p += n;
    return true;
  }
  bool done() const { return p >= end; }
};

// The dims of a TypeProto's tensor shape (-1 for a symbolic dim); nullopt when there is no shape.
std::optional<std::vector<std::int64_t>> onnx_type_dims(PbReader type) {
  std::uint64_t num = 0;
  unsigned wire = 0;
  while (!type.done()) {
    if (!type.key(num, wire)) return std::nullopt;
    if (num != 1 || wire != 2) {
      if (!type.skip(wire)) return std::nullopt;
      continue;
    }
    PbReader tensor;
    if (!type.sub(tensor)) return std::nullopt;
    while (!tensor.done()) {
      if (!tensor.key(num, wire)) return std::nullopt;
      if (num != 2 || wire != 2) {
        if (!tensor.skip(wire)) return std::nullopt;
        continue;
      }
      PbReader shape;
      if (!tensor.sub(shape)) return std::nullopt;
      std::vector<std::int64_t> dims;
      while (!shape.done()) {
        if (!shape.key(num, wire)) return std::nullopt;
        if (num != 1 || wire != 2) {
          if (!shape.skip(wire)) return std::nullopt;
          continue;
        }
        PbReader dim;
        if (!shape.sub(dim)) return std::nullopt;
        std::int64_t value = -1;
        while (!dim.done()) {
          if (!dim.key(num, wire)) return std::nullopt;
          std::uint64_t v = 0;
          if (num == 1 && wire == 0) {
            if (!dim.varint(v)) return std::nullopt;
            value = static_cast<std::int64_t>(v);
          } else if (!dim.skip(wire)) {
            return std::nullopt;
          }
        }
        dims.push_back(value);
      }
      return dims;
    }
  }
  return std::nullopt;
}

// The value of the first string field `field` of a message, or "" if it has none.
std::string pb_string_field(PbReader msg, std::uint64_t field) {
  std::uint64_t num = 0;
  unsigned wire = 0;
  while (!msg.done()) {
    if (!msg.key(num, wire)) return {};
    if (num == field && wire == 2) {
      PbReader s;
      if (!msg.sub(s)) return {};
      return std::string(reinterpret_cast<const char*>(s.p), static_cast<size_t>(s.end - s.p));
    }
    if (!msg.skip(wire)) return {};
  }
  return {};
}

// The dims of the ONNX model's first real input (a graph input that is not an initializer).
std::optional<std::vector<std::int64_t>> onnx_input_dims(const std::string& bytes) {
  PbReader model{reinterpret_cast<const unsigned char*>(bytes.data()),
                 reinterpret_cast<const unsigned char*>(bytes.data()) + bytes.size()};
  std::uint64_t num = 0;
  unsigned wire = 0;
  while (!model.done()) {
    if (!model.key(num, wire)) return std::nullopt;
    if (num != 7 || wire != 2) {
      if (!model.skip(wire)) return std::nullopt;
      continue;
    }
    PbReader graph;
    if (!model.sub(graph)) return std::nullopt;
    std::set<std::string> initializers;
    std::vector<std::pair<std::string, PbReader>> inputs;  // name, ValueInfoProto
    while (!graph.done()) {
      if (!graph.key(num, wire)) return std::nullopt;
      PbReader field;
      if ((num == 5 || num == 11) && wire == 2) {
        if (!graph.sub(field)) return std::nullopt;
        if (num == 5) initializers.insert(pb_string_field(field, 8));
        if (num == 11) inputs.emplace_back(pb_string_field(field, 1), field);
      } else if (!graph.skip(wire)) {
        return std::nullopt;
      }
    }
    for (auto& [name, info] : inputs) {
      if (initializers.count(name)) continue;
      std::uint64_t n = 0;
      unsigned w = 0;
      while (!info.done()) {
        if (!info.key(n, w)) return std::nullopt;
        if (n == 2 && w == 2) {
          PbReader type;
          if (!info.sub(type)) return std::nullopt;
          return onnx_type_dims(type);
        }
        if (!info.skip(w)) return std::nullopt;
      }
      return std::nullopt;
    }
    return std::nullopt;
  }
  return std::nullopt;
}

// ---------------------------------------------------------------------------------------------
// Darknet and names files.

// The [net] width and height of a darknet .cfg; nullopt if absent.
std::optional<cv::Size> darknet_cfg_size(const std::string& cfg_text) {
  bool in_net = false;
  int w = 0, h = 0;
  size_t pos = 0;
  while (pos <= cfg_text.size()) {
    size_t eol = cfg_text.find('\n', pos);
    if (eol == std::string::npos) eol = cfg_text.size();
    std::string_view line = trim(std::string_view(cfg_text).substr(pos, eol - pos));
    pos = eol + 1;
    if (const auto c = line.find_first_of("#;"); c != std::string_view::npos) {
      line = trim(line.substr(0, c));
    }
    if (line.empty()) continue;
    if (line.front() == '[') {
      if (in_net) break;  // the [net] section ended
      in_net = line == "[net]" || line == "[network]";
      continue;
    }
    if (!in_net) continue;
    const auto eq = line.find('=');
    if (eq == std::string_view::npos) continue;
    const std::string k(trim(line.substr(0, eq)));
    const std::string v(trim(line.substr(eq + 1)));
    try {
      if (k == "width") w = std::stoi(v);
      if (k == "height") h = std::stoi(v);
    } catch (const std::exception&) {
      return std::nullopt;
    }
  }
  if (w <= 0 || h <= 0) return std::nullopt;
  return cv::Size(w, h);
}

// One name per class: from the names file (non-empty lines), else COCO's; "class_<id>" fills any
// class the list does not cover. Throws if a names file is given but cannot be read.
std::vector<std::string> load_names(const std::string& names_path, int num_classes) {
  std::vector<std::string> names;
  if (names_path.empty()) {
    names.assign(kCocoNames.begin(), kCocoNames.end());
  } else {
    const auto text = read_whole_file(names_path);
    if (!text)
      throw std::runtime_error(fmt::format("cannot read class-names file '{}'", names_path));
    size_t pos = 0;
    while (pos < text->size()) {
      size_t eol = text->find('\n', pos);
      if (eol == std::string::npos) eol = text->size();
      const auto name = trim(std::string_view(*text).substr(pos, eol - pos));
      if (!name.empty()) names.emplace_back(name);
      pos = eol + 1;
    }
  }
  for (int id = static_cast<int>(names.size()); id < num_classes; ++id) {
    names.push_back(fmt::format("class_{}", id));
  }
  return names;
}

// ---------------------------------------------------------------------------------------------
// Output shapes and family recognition.

// The number of grid cells over the strides 8/16/32 for an input of size s (one anchor a cell).
long grid_cells(cv::Size s) {
  long n = 0;
  for (int st : kStrides) n += static_cast<long>(s.width / st) * (s.height / st);
  return n;
}

// An ONNX output seen as [rows, cols] of floats after dropping a leading batch dim of 1.
struct OutShape {
  int a = 0, b = 0;  // [1, a, b]
  bool ok = false;
};

// The [1, a, b] shape of an ONNX output (a 2-D [a, b] is accepted too).
OutShape onnx_out_shape(const cv::Mat& out) {
  if (out.type() != CV_32F) return {};
  if (out.dims == 3 && out.size[0] == 1) return {out.size[1], out.size[2], true};
  if (out.dims == 2) return {out.size[0], out.size[1], true};
  return {};
}

// True when some row has a negative width or height (columns 2, 3): that is a raw YOLOX grid
// output (log-space w/h). Decoded YOLOv5 boxes always have positive sizes.
bool looks_raw(const cv::Mat& out, OutShape s) {
  const float* d = out.ptr<float>();
  for (int i = 0; i < s.a; ++i) {
    if (d[static_cast<size_t>(i) * s.b + 2] < 0 || d[static_cast<size_t>(i) * s.b + 3] < 0) {
      return true;
    }
  }
  return false;
}

// The family an ONNX output implies: [1, 4+nc, N] (N > 4+nc) is YOLOv8; [1, N, 5+nc] is YOLOv5
// when N = 3 anchors x cells(input), YOLOX when N = 1 x cells(input); if N fits neither, the values
// decide (negative w/h: raw YOLOX). nullopt: a layout none of the families has.
std::optional<ModelFamily> recognise_onnx(const cv::Mat& out, OutShape s, cv::Size input) {
  if (!s.ok) return std::nullopt;
  if (s.a >= 5 && s.b > s.a) return ModelFamily::YoloV8;
  if (s.b >= 6 && s.a > s.b) {
    const long cells = grid_cells(input);
    if (s.a == 3 * cells) return ModelFamily::YoloV5;
    if (s.a == cells) return ModelFamily::YoloX;
    return looks_raw(out, s) ? ModelFamily::YoloX : ModelFamily::YoloV5;
  }
  return std::nullopt;
}

// Why an ONNX output does not fit family f, or "" when it fits.
std::string onnx_layout_error(ModelFamily f, OutShape s, cv::Size input) {
  if (!s.ok) return "the first output is not a float [1, a, b] tensor";
  switch (f) {
    case ModelFamily::YoloV8:
      if (s.a >= 5 && s.b > s.a) return {};
      return fmt::format("yolov8 needs an output [1, 4+classes, N], got [1, {}, {}]", s.a, s.b);
    case ModelFamily::YoloV5:
      if (s.b >= 6 && s.a > s.b) return {};
      return fmt::format("yolov5 needs an output [1, N, 5+classes], got [1, {}, {}]", s.a, s.b);
    case ModelFamily::YoloX:
      if (s.b >= 6 && s.a == grid_cells(input)) return {};
      return fmt::format(
          "yolox needs a raw output [1, {}, 5+classes] at input {}x{}, got [1, {}, {}]",
          grid_cells(input), input.width, input.height, s.a, s.b);
    default:
      return "not an ONNX family";
  }
}

// ---------------------------------------------------------------------------------------------
// Pre-processing and decoding.

// Resizes img (keeping its aspect) into the top-left corner of a pad-114 canvas of size s, as
// verify.py does; ratio receives the scale factor.
cv::Mat letterbox(const cv::Mat& img, cv::Size s, double& ratio) {
  ratio =
      std::min(static_cast<double>(s.height) / img.rows, static_cast<double>(s.width) / img.cols);
  // Python's round() rounds half to even, like nearbyint in the default rounding mode.
  const int nh = std::max(1, static_cast<int>(std::nearbyint(img.rows * ratio)));
  const int nw = std::max(1, static_cast<int>(std::nearbyint(img.cols * ratio)));
  cv::Mat out(s, CV_8UC3, cv::Scalar::all(kPadValue));
  cv::Mat roi = out(cv::Rect(0, 0, std::min(nw, s.width), std::min(nh, s.height)));
  cv::resize(img, roi, roi.size(), 0, 0, cv::INTER_LINEAR);
  return out;
}

// A box candidate before NMS.
struct Candidate {
  int cls;
  float score;
  cv::Rect2d box;  // top-left + size, original image pixels
};

// The index and value of the largest of n scores (the first one on ties, like numpy's argmax).
std::pair<int, float> argmax(const float* p, int n, std::ptrdiff_t step) {
  int best = 0;
  float v = p[0];
  for (int j = 1; j < n; ++j) {
    if (p[j * step] > v) {
      v = p[j * step];
      best = j;
    }
  }
  return {best, v};
}

// Makes a candidate from a centre box in input pixels, scaled back by the letterbox ratio.
Candidate letterbox_candidate(int cls, float score, float cx, float cy, float w, float h, float r) {
  cx /= r;
  cy /= r;
  w /= r;
  h /= r;
  return {cls, score, cv::Rect2d(cx - w / 2, cy - h / 2, w, h)};
}

// YOLOv8: [1, 4+nc, N], columns cx, cy, w, h (input pixels) and nc class scores.
void decode_v8(const cv::Mat& out, OutShape s, double ratio, float conf,
               std::vector<Candidate>& c) {
  const float* d = out.ptr<float>();
  const int n = s.b, nc = s.a - 4;
  for (int i = 0; i < n; ++i) {
    const auto [cls, score] = argmax(d + 4 * static_cast<size_t>(n) + i, nc, n);
    if (score < conf) continue;
    c.push_back(letterbox_candidate(cls, score, d[i], d[n + i], d[2 * n + i], d[3 * n + i],
                                    static_cast<float>(ratio)));
  }
}

// YOLOv5 and YOLOX: [1, N, 5+nc], cx, cy, w, h, objectness, nc class probabilities (score = obj *
// prob). YOLOv5 rows are decoded (input pixels); YOLOX rows are raw, in grid order for the strides
// 8/16/32: xy = (out + cell) * stride, wh = exp(out) * stride.
void decode_v5_yolox(const cv::Mat& out, OutShape s, bool yolox, cv::Size input, double ratio,
                     float conf, std::vector<Candidate>& c) {
  const float* d = out.ptr<float>();
  const int nc = s.b - 5;
  const auto r = static_cast<float>(ratio);
  std::vector<float> scores(static_cast<size_t>(nc));
  int stride = 0, grid_w = 1, level_start = 0, level_end = 0, level = 0;
  for (int i = 0; i < s.a; ++i) {
    while (yolox && i >= level_end && level < static_cast<int>(kStrides.size())) {
      stride = kStrides[static_cast<size_t>(level++)];
      grid_w = input.width / stride;
      level_start = level_end;
      level_end += grid_w * (input.height / stride);
    }
    const float* p = d + static_cast<size_t>(i) * s.b;
    const float obj = p[4];
    if (obj < conf) continue;  // probabilities are <= 1, so obj * prob < conf too
    for (int j = 0; j < nc; ++j) scores[static_cast<size_t>(j)] = p[5 + j] * obj;
    const auto [cls, score] = argmax(scores.data(), nc, 1);
    if (score < conf) continue;
    if (!yolox) {
      c.push_back(letterbox_candidate(cls, score, p[0], p[1], p[2], p[3], r));
      continue;
    }
    const int k = i - level_start;
    const auto st = static_cast<float>(stride);
    c.push_back(letterbox_candidate(cls, score, (p[0] + static_cast<float>(k % grid_w)) * st,
                                    (p[1] + static_cast<float>(k / grid_w)) * st,
                                    std::exp(p[2]) * st, std::exp(p[3]) * st, r));
  }
}

// Darknet: each output [rows, 5+nc], normalised cx, cy, w, h, objectness, nc scores that OpenCV has
// already multiplied by the objectness.
void decode_darknet(const std::vector<cv::Mat>& outs, cv::Size image, float conf,
                    std::vector<Candidate>& c) {
  const double iw = image.width, ih = image.height;
  for (const cv::Mat& out : outs) {
    const int cols = out.size[out.dims - 1];
    const int rows = static_cast<int>(out.total() / static_cast<size_t>(cols));
    const float* d = out.ptr<float>();
    for (int i = 0; i < rows; ++i) {
      const float* p = d + static_cast<size_t>(i) * cols;
      const auto [cls, score] = argmax(p + 5, cols - 5, 1);
      if (score < conf) continue;
      const double w = p[2] * iw, h = p[3] * ih;
      c.push_back({cls, score, cv::Rect2d(p[0] * iw - w / 2, p[1] * ih - h / 2, w, h)});
    }
  }
}

// Keeps, class by class, the candidates that survive NMS at IoU threshold iou.
std::vector<Candidate> nms_per_class(std::vector<Candidate> c, float conf, float iou) {
  std::stable_sort(c.begin(), c.end(),
                   [](const Candidate& x, const Candidate& y) { return x.cls < y.cls; });
  std::vector<Candidate> kept;
  std::vector<cv::Rect2d> boxes;
  std::vector<float> scores;
  std::vector<int> keep;
  for (size_t first = 0; first < c.size();) {
    size_t last = first;
    boxes.clear();
    scores.clear();
    while (last < c.size() && c[last].cls == c[first].cls) {
      boxes.push_back(c[last].box);
      scores.push_back(c[last].score);
      ++last;
    }
    cv::dnn::NMSBoxes(boxes, scores, conf, iou, keep);
    for (int k : keep) kept.push_back(c[first + static_cast<size_t>(k)]);
    first = last;
  }
  std::stable_sort(kept.begin(), kept.end(),
                   [](const Candidate& x, const Candidate& y) { return x.score > y.score; });
  return kept;
}

// The image as 8-bit BGR (gray and BGRA are converted); empty if it cannot be.
cv::Mat as_bgr8(const cv::Mat& img) {
  if (img.empty() || img.depth() != CV_8U) return {};
  cv::Mat bgr;
  switch (img.channels()) {
    case 3:
      return img;
    case 1:
      cv::cvtColor(img, bgr, cv::COLOR_GRAY2BGR);
      return bgr;
    case 4:
      cv::cvtColor(img, bgr, cv::COLOR_BGRA2BGR);
      return bgr;
    default:
      return {};
  }
}

// ---------------------------------------------------------------------------------------------
// Image byte checks (libjpeg "decodes" a truncated JPEG, filling the rest with gray).

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
