// Decoding: see decoders.hpp.
#include "src/yolo/decoders.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <opencv2/dnn.hpp>
#include <opencv2/imgproc.hpp>
#include <utility>

namespace zyolo::yolo {
namespace {

// The number of grid cells over the strides 8/16/32 for an input of size s (one anchor a cell).
long grid_cells(cv::Size s) {
  long n = 0;
  for (int st : kStrides) n += static_cast<long>(s.width / st) * (s.height / st);
  return n;
}

}  // namespace

// The [1, a, b] shape of an ONNX output (a 2-D [a, b] is accepted too).
OutShape onnx_out_shape(const cv::Mat& out) {
  if (out.type() != CV_32F) return {};
  if (out.dims == 3 && out.size[0] == 1) return {out.size[1], out.size[2], true};
  if (out.dims == 2) return {out.size[0], out.size[1], true};
  return {};
}

namespace {

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

}  // namespace

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

// --- pre-processing and decoding ------------------------------------------------------------------

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

namespace {

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

}  // namespace

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

}  // namespace zyolo::yolo
