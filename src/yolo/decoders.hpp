// From the network's outputs to detections, per family: output shapes and family recognition,
// letterbox pre-processing, the decoders of YOLOv8, YOLOv5/YOLOX and darknet outputs, and per-class
// NMS. Pre-processing and box decoding match shared/models/tools/verify.py, so the numbers agree.
// Internal to src/yolo/ (namespace zyolo::yolo).
#pragma once

#include <array>
#include <optional>
#include <opencv2/core.hpp>
#include <string>
#include <vector>

#include "src/yolo/detector.hpp"

namespace zyolo::yolo {

inline constexpr double kPadValue = 114;                     // letterbox fill (v8, v5, yolox)
inline constexpr std::array<int, 3> kStrides = {8, 16, 32};  // output strides of the YOLO heads

// An ONNX output seen as [rows, cols] of floats after dropping a leading batch dim of 1.
struct OutShape {
  int a = 0, b = 0;  // [1, a, b]
  bool ok = false;
};
// The [1, a, b] shape of an ONNX output (a 2-D [a, b] is accepted too).
OutShape onnx_out_shape(const cv::Mat& out);

// The family an ONNX output implies: [1, 4+nc, N] (N > 4+nc) is YOLOv8; [1, N, 5+nc] is YOLOv5
// when N = 3 anchors x cells(input), YOLOX when N = 1 x cells(input); if N fits neither, the values
// decide (negative w/h: raw YOLOX). nullopt: a layout none of the families has.
std::optional<ModelFamily> recognise_onnx(const cv::Mat& out, OutShape s, cv::Size input);
// Why an ONNX output does not fit family f, or "" when it fits.
std::string onnx_layout_error(ModelFamily f, OutShape s, cv::Size input);

// Resizes img (keeping its aspect) into the top-left corner of a pad-114 canvas of size s, as
// verify.py does; ratio receives the scale factor.
cv::Mat letterbox(const cv::Mat& img, cv::Size s, double& ratio);
// The image as 8-bit BGR (gray and BGRA are converted); empty if it cannot be.
cv::Mat as_bgr8(const cv::Mat& img);

// A box candidate before NMS.
struct Candidate {
  int cls;
  float score;
  cv::Rect2d box;  // top-left + size, original image pixels
};

// YOLOv8: [1, 4+nc, N], columns cx, cy, w, h (input pixels) and nc class scores.
void decode_v8(const cv::Mat& out, OutShape s, double ratio, float conf, std::vector<Candidate>& c);
// YOLOv5 and YOLOX: [1, N, 5+nc], cx, cy, w, h, objectness, nc class probabilities (score = obj *
// prob). YOLOv5 rows are decoded (input pixels); YOLOX rows are raw, in grid order for the strides
// 8/16/32: xy = (out + cell) * stride, wh = exp(out) * stride.
void decode_v5_yolox(const cv::Mat& out, OutShape s, bool yolox, cv::Size input, double ratio,
                     float conf, std::vector<Candidate>& c);
// Darknet: each output [rows, 5+nc], normalised cx, cy, w, h, objectness, nc scores that OpenCV has
// already multiplied by the objectness.
void decode_darknet(const std::vector<cv::Mat>& outs, cv::Size image, float conf,
                    std::vector<Candidate>& c);
// Keeps, class by class, the candidates that survive NMS at IoU threshold iou, strongest first.
std::vector<Candidate> nms_per_class(std::vector<Candidate> c, float conf, float iou);

}  // namespace zyolo::yolo
