// `zyolo detect` as a user runs it: the binary as a process on the shared images, with the fast
// darknet model (and once YOLOv8n) against shared/models/SOURCES.md's reference confidences; JSON
// Lines in order; --annotate writing decodable copies; bad images named on stderr while the good
// ones still run (exit 1); model and flag errors naming the path (exit 2). Missing shared data
// fails loudly, it is never skipped.
#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "run_binary.hpp"

#ifndef ZYOLO_SHARED_DIR
#error "define ZYOLO_SHARED_DIR as a string literal: the path of the shared/ folder"
#endif

namespace fs = std::filesystem;

namespace {

constexpr double kConfTolerance = 0.02;

using zyolo_test::has;
using zyolo_test::slurp;
using zyolo_test::zyolo;

// A per-process path under /tmp for `name`.
std::string tmp_path(const std::string& name) {
  return "/tmp/zyolo-test-detect-" + std::to_string(::getpid()) + "-" + name;
}

// A file of the shared/ folder that must exist; fails the test naming it otherwise.
std::string shared_file(const std::string& relative) {
  const fs::path p = fs::path(ZYOLO_SHARED_DIR) / relative;
  REQUIRE_MESSAGE(fs::is_regular_file(p), "required shared test file is missing: " << p.string());
  return p.string();
}

std::string image(const std::string& name) {
  return shared_file("images/" + name);
}

// The fast darknet model (Yolo-Fastest 1.1 XL), with its .weights checked too.
std::string fast_model() {
  shared_file("models/yolo-fastest-1.1-xl.weights");
  return shared_file("models/yolo-fastest-1.1-xl.cfg");
}

// The non-empty lines of `text`.
std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::stringstream ss(text);
  for (std::string line; std::getline(ss, line);)
    if (!line.empty()) lines.push_back(line);
  return lines;
}

// The JSON Lines of stdout, each of which must parse.
std::vector<nlohmann::json> json_lines(const std::string& out) {
  std::vector<nlohmann::json> records;
  for (const std::string& line : lines_of(out)) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    REQUIRE_MESSAGE(!j.is_discarded(), "stdout line is not JSON: " << line);
    records.push_back(std::move(j));
  }
  return records;
}

// The highest confidence of `cls` among a record's detections, or -1 if it has none.
double best_confidence(const nlohmann::json& record, const std::string& cls) {
  double best = -1;
  for (const auto& d : record.at("detections"))
    if (d.at("class") == cls) best = std::max(best, d.at("confidence").get<double>());
  return best;
}

// Checks the shape of one JSON Lines record of `zyolo detect --json`.
void check_record_shape(const nlohmann::json& record) {
  CAPTURE(record.dump());
  CHECK(record.at("image").is_string());
  REQUIRE(record.at("detections").is_array());
  for (const auto& d : record.at("detections")) {
    CHECK(d.at("class_id").is_number_integer());
    CHECK(d.at("class").is_string());
    CHECK(d.at("confidence").is_number());
    CHECK(d.at("box").size() == 4);
  }
  for (auto key : {"decode", "pre", "inference", "post"}) {
    REQUIRE(record.at("times_ms").contains(key));
    CHECK(record.at("times_ms").at(key).get<double>() >= 0);
  }
}

// A file in /tmp holding `bytes`, removed at scope exit.
struct TempFile {
  std::string path;
  TempFile(const std::string& name, const std::string& bytes) : path(tmp_path(name)) {
    std::ofstream(path, std::ios::binary) << bytes;
  }
  ~TempFile() { std::remove(path.c_str()); }
};

// A folder path in /tmp, removed (with its contents) at scope exit.
struct TempDir {
  std::string path;
  explicit TempDir(const std::string& name) : path(tmp_path(name)) { fs::remove_all(path); }
  ~TempDir() { fs::remove_all(path); }
};

}  // namespace

TEST_CASE("detect dog.jpg with the darknet model --json: one line with SOURCES.md's detections") {
  const std::string dog = image("dog.jpg");
  auto r = zyolo("detect " + dog + " --model " + fast_model() + " --json");
  INFO(r.out, r.err);
  REQUIRE(r.code == 0);
  const auto records = json_lines(r.out);
  REQUIRE(records.size() == 1);
  check_record_shape(records[0]);
  CHECK(records[0]["image"] == dog);
  for (auto [cls, conf] : {std::pair{"dog", 0.958}, {"bicycle", 0.894}, {"car", 0.841}}) {
    CAPTURE(cls);
    CHECK(std::abs(best_confidence(records[0], cls) - conf) <= kConfTolerance);
  }
}

TEST_CASE("several images in one call give one JSON line each, in the order given") {
  const std::vector<std::string> images = {image("horses.jpg"), image("dog.jpg"),
                                           image("person.jpg"), image("dog.jpg")};
  std::string args = "detect --json --model " + fast_model();
  for (const auto& i : images) args += " " + i;
  auto r = zyolo(args);
  INFO(r.out, r.err);
  REQUIRE(r.code == 0);
  const auto records = json_lines(r.out);
  REQUIRE(records.size() == images.size());
  for (size_t i = 0; i < images.size(); ++i) {
    check_record_shape(records[i]);
    CHECK(records[i]["image"] == images[i]);
  }
  CHECK(best_confidence(records[0], "horse") > 0.5);
  CHECK(best_confidence(records[2], "person") > 0.5);
  CHECK(records[1]["detections"] == records[3]["detections"]);
}

TEST_CASE("the human output: a header line per image, then one line per detection") {
  const std::string dog = image("dog.jpg");
  auto r = zyolo("detect " + dog + " --model " + fast_model());
  INFO(r.out, r.err);
  REQUIRE(r.code == 0);
  const auto lines = lines_of(r.out);
  REQUIRE(lines.size() >= 4);
  CHECK(
      lines[0].starts_with(dog + ": " + std::to_string(lines.size() - 1) + " detections (decode "));
  CHECK(has(lines[0], " ms, pre "));
  CHECK(has(lines[0], " ms, inference "));
  CHECK(has(lines[0], " ms, post "));
  CHECK(lines[1].starts_with("  dog  conf 0.95"));
  CHECK(has(lines[1], "  box "));
  CHECK(has(lines[1], " - "));
}

TEST_CASE("--annotate DIR creates DIR and writes a decodable copy of the image's size") {
  TempDir dir("annotate");
  const std::string nested = dir.path + "/sub";
  const std::string dog = image("dog.jpg");
  auto r = zyolo("detect " + dog + " --model " + fast_model() + " --json --annotate " + nested);
  INFO(r.out, r.err);
  REQUIRE(r.code == 0);
  CHECK(json_lines(r.out).size() == 1);  // the note goes to stderr, not stdout
  const std::string written = nested + "/dog.jpg";
  CHECK(has(r.err, written));
  REQUIRE_MESSAGE(fs::is_regular_file(written), "no annotated file at " << written);
  const cv::Mat in = cv::imread(dog), out = cv::imread(written);
  REQUIRE(!in.empty());
  REQUIRE(!out.empty());
  CHECK(out.size() == in.size());
  CHECK(cv::norm(in, out, cv::NORM_INF) > 0);  // something was drawn

  TempFile file("not-a-dir", "text\n");
  r = zyolo("detect " + dog + " --model " + fast_model() + " --annotate " + file.path);
  CHECK(r.code == 2);
  CHECK(has(r.err, file.path));
  r = zyolo("detect " + dog + " --model " + fast_model() + " --annotate " + file.path + "/sub");
  CHECK(r.code == 2);
  CHECK(has(r.err, file.path + "/sub"));
}

TEST_CASE("bad images are named on stderr, the good one is still detected, exit 1") {
  const std::string dog = image("dog.jpg");
  const std::string bytes = slurp(dog);
  REQUIRE(bytes.size() > 1000);
  TempFile text("notes.txt", "this is not an image\n");
  TempFile half("half.jpg", bytes.substr(0, bytes.size() / 2));
  const std::string missing = tmp_path("missing.jpg");
  auto r = zyolo("detect --json --model " + fast_model() + " " + text.path + " " + half.path + " " +
                 dog + " " + missing);
  INFO(r.out, r.err);
  CHECK(r.code == 1);
  const auto records = json_lines(r.out);
  REQUIRE(records.size() == 1);
  CHECK(records[0]["image"] == dog);
  CHECK(std::abs(best_confidence(records[0], "dog") - 0.958) <= kConfTolerance);
  CHECK(has(r.err, text.path + ": not a decodable image"));
  CHECK(has(r.err, half.path + ": not a decodable image"));
  CHECK(has(r.err, missing + ": cannot read"));
  CHECK(!has(r.err, dog));
}

TEST_CASE("model errors exit 2 and name the path") {
  const std::string dog = image("dog.jpg");
  auto r = zyolo("detect " + dog + " --model /nonexistent.onnx");
  CHECK(r.code == 2);
  CHECK(has(r.err, "/nonexistent.onnx"));
  CHECK(r.out.empty());

  r = zyolo("detect " + dog + " --model none");
  CHECK(r.code == 2);
  CHECK(has(r.err, "--model none"));
  CHECK(has(r.err, "--model PATH"));

  TempFile cfg("lonely.cfg", slurp(fast_model()));
  const std::string weights = fs::path(cfg.path).replace_extension(".weights").string();
  r = zyolo("detect " + dog + " --model " + cfg.path);
  CHECK(r.code == 2);
  CHECK(has(r.err, weights));
}

TEST_CASE("--help documents every option; bad flags are usage errors") {
  auto r = zyolo("detect --help");
  CHECK(r.code == 0);
  for (auto flag : {"IMAGE", "--model", "--json", "--annotate", "--config", "--family", "--conf",
                    "--nms", "--input-size", "--cv-threads"})
    CHECK(has(r.out, flag));

  CHECK(zyolo("detect").code == 2);  // no image
  const std::string args = "detect " + image("dog.jpg") + " --model " + fast_model();
  const std::pair<std::string, std::string> bad_flags[] = {{"--conf", "1.5"},
                                                           {"--nms", "0"},
                                                           {"--family", "yolov9"},
                                                           {"--input-size", "100"},
                                                           {"--cv-threads", "-1"}};
  for (const auto& [flag, value] : bad_flags) {
    CAPTURE(flag);
    r = zyolo(args + " " + flag + " " + value);
    CHECK(r.code == 2);
    CHECK(has(r.err + r.out, flag));
  }
  r = zyolo(args + " --config /nonexistent/zyolo.toml");
  CHECK(r.code == 2);
  CHECK(has(r.err, "/nonexistent/zyolo.toml"));
}

TEST_CASE("flags override the config file's worker keys") {
  TempFile cfg("detect.toml", "[worker]\nmodel = \"none\"\nconf_threshold = 0.9\n");
  const std::string dog = image("dog.jpg");
  auto r = zyolo("detect --json " + dog + " --config " + cfg.path);
  CHECK(r.code == 2);  // the file's model "none" cannot detect
  r = zyolo("detect --json " + dog + " --config " + cfg.path + " --model " + fast_model());
  INFO(r.out, r.err);
  REQUIRE(r.code == 0);
  auto records = json_lines(r.out);
  REQUIRE(records.size() == 1);
  CHECK(records[0]["detections"].size() == 1);  // only dog 0.958 clears 0.9
  r = zyolo("detect --json " + dog + " --config " + cfg.path + " --model " + fast_model() +
            " --conf 0.5");
  REQUIRE(r.code == 0);
  records = json_lines(r.out);
  REQUIRE(records.size() == 1);
  CHECK(records[0]["detections"].size() == 3);  // dog, bicycle, car
}

TEST_CASE("YOLOv8n on dog.jpg finds SOURCES.md's dog and bicycle") {
  const std::string dog = image("dog.jpg");
  auto r = zyolo("detect " + dog + " --model " + shared_file("models/yolov8n.onnx") + " --json");
  INFO(r.out, r.err);
  REQUIRE(r.code == 0);
  const auto records = json_lines(r.out);
  REQUIRE(records.size() == 1);
  check_record_shape(records[0]);
  CHECK(std::abs(best_confidence(records[0], "dog") - 0.927) <= kConfTolerance);
  CHECK(std::abs(best_confidence(records[0], "bicycle") - 0.879) <= kConfTolerance);
}
