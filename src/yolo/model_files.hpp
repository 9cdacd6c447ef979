// What the detector reads from model files before OpenCV loads them: an ONNX model's input dims
// (a minimal, bounds-checked protobuf reader: OpenCV 4.6 has no API for them), a darknet .cfg's
// [net] size, and the class names. Internal to src/yolo/ (namespace zyolo::yolo).
#pragma once

#include <cstdint>
#include <filesystem>
#include <opencv2/core.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace zyolo::yolo {

// ASCII lower-case copy of s.
std::string lower(std::string s);
// s without leading and trailing white space (including a Windows '\r').
std::string_view trim(std::string_view s);
// The whole content of a file, or nullopt if it cannot be opened or read.
std::optional<std::string> read_whole_file(const std::filesystem::path& p);

// The dims of the ONNX model's first real input (a graph input that is not an initializer), -1
// for a symbolic dim; nullopt when the bytes are not a model with such an input.
std::optional<std::vector<std::int64_t>> onnx_input_dims(const std::string& bytes);

// The [net] width and height of a darknet .cfg; nullopt if absent.
std::optional<cv::Size> darknet_cfg_size(const std::string& cfg_text);

// One name per class: from the names file (non-empty lines), else COCO's; "class_<id>" fills any
// class the list does not cover. Throws std::runtime_error if a names file is given but cannot
// be read.
std::vector<std::string> load_names(const std::string& names_path, int num_classes);

}  // namespace zyolo::yolo
