// Model files: see model_files.hpp.
#include "src/yolo/model_files.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <fstream>
#include <iterator>
#include <set>
#include <stdexcept>
#include <utility>

namespace zyolo::yolo {
namespace {

namespace fs = std::filesystem;

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

}  // namespace

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

// --- darknet and names files ---------------------------------------------------------------------

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
std::optional<std::string> read_whole_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) return std::nullopt;
  std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) return std::nullopt;
  return data;
}

}  // namespace zyolo::yolo
