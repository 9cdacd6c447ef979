// Real YOLO workers in a fleet, as a user runs them: the binary as a process with the shared
// models and images. Missing shared data fails loudly (it is never skipped).
#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "run_binary.hpp"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

using zyolo_test::has;
using zyolo_test::zyolo;

std::string slurp(const fs::path& path) { return zyolo_test::slurp(path.string()); }

// A fresh scratch folder for one test, removed at the end.
struct Scratch {
  fs::path dir;
  explicit Scratch(const std::string& name)
      : dir(fs::temp_directory_path() / ("zyolo-test-" + name + "-" + std::to_string(::getpid()))) {
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  ~Scratch() { fs::remove_all(dir); }
};

// A file of the shared folder; fails the test, naming it, when it is missing.
std::string shared(const std::string& relative) {
  const fs::path p = fs::path(ZYOLO_SHARED_DIR) / relative;
  REQUIRE_MESSAGE(fs::exists(p), "shared data is missing: " << p.string());
  return p.string();
}

std::vector<json> json_lines(const std::string& text) {
  std::vector<json> lines;
  std::stringstream ss(text);
  for (std::string line; std::getline(ss, line);)
    if (!line.empty()) lines.push_back(json::parse(line));
  return lines;
}

// Two detection lists are the same detections: classes exactly, numbers to their printed precision.
void check_same(const json& a, const json& b) {
  REQUIRE(a.size() == b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    CHECK(a[i]["class"] == b[i]["class"]);
    CHECK(a[i]["confidence"].get<double>() == doctest::Approx(b[i]["confidence"].get<double>()).epsilon(0.001));
    for (int k = 0; k < 4; ++k)
      CHECK(a[i]["box"][k].get<double>() == doctest::Approx(b[i]["box"][k].get<double>()).epsilon(0.002));
  }
}


}  // namespace

TEST_CASE("yolov8n fleet: 40 requests answered; each saved detection equals zyolo detect's") {
  Scratch s("yolo-fleet");
  const std::string model = shared("models/yolov8n.onnx");
  const std::string images = fs::path(shared("images/dog.jpg")).parent_path().string();
  const auto saved = s.dir / "d.jsonl";
  auto run = zyolo("run --quiet --model " + model + " --images " + images +
                       " --clients 4 --workers 2 --requests 40 --save-detections " + saved.string() +
                       " --report " + (s.dir / "r.json").string());
  INFO(run.out, run.err);
  REQUIRE(run.code == 0);
  const json report = json::parse(slurp(s.dir / "r.json"));
  CHECK(report["requests"]["answered"] == 40);
  CHECK(report["requests"]["lost"] == 0);
  CHECK(report["requests"]["duplicates_delivered"] == 0);
  for (auto stage : {"queue_wait", "decode", "pre", "inference", "post"}) {
    CAPTURE(stage);
    REQUIRE(report["stages_ms"].contains(stage));
    CHECK(report["stages_ms"][stage]["p50"].get<double>() >= 0);
  }
  CHECK(report["stages_ms"]["inference"]["p50"].get<double>() > 0);

  // What zyolo detect says about each image, alone, without a broker.
  std::map<std::string, json> expected;
  for (const auto& name : {"dog.jpg", "horses.jpg", "person.jpg"}) {
    auto detect = zyolo("detect --json --model " + model + " " + images + "/" + name);
    REQUIRE(detect.code == 0);
    expected[name] = json::parse(detect.out)["detections"];
    CHECK(!expected[name].empty());
  }
  const auto lines = json_lines(slurp(saved));
  REQUIRE(lines.size() == 40);
  std::set<std::string> ids;
  for (const auto& line : lines) {
    CAPTURE(line.dump());
    ids.insert(line["id"].get<std::string>());
    const std::string image = line["image"];
    REQUIRE(expected.count(image) == 1);
    check_same(line["detections"], expected[image]);
  }
  CHECK(ids.size() == 40);  // each request once
}

TEST_CASE("bad images get 400 and the run goes on") {
  Scratch s("bad-images");
  const std::string dog = slurp(shared("images/dog.jpg"));
  std::ofstream(s.dir / "a-dog.jpg", std::ios::binary) << dog;
  std::ofstream(s.dir / "b-empty.jpg", std::ios::binary);
  std::ofstream(s.dir / "c-truncated.jpg", std::ios::binary) << dog.substr(0, dog.size() / 2);
  std::ofstream(s.dir / "d-random.png", std::ios::binary) << std::string(5000, '\x5a');
  std::ofstream(s.dir / "e-text.jpg") << "this is not an image\n";
  auto run = zyolo("run --quiet --model " + shared("models/yolo-fastest-1.1.cfg") + " --images " +
                       s.dir.string() + " --clients 1 --workers 1 --requests 10 --report " +
                       (s.dir / "r.json").string());
  INFO(run.out, run.err);
  CHECK(run.code == 0);  // every request accounted for: answered or an explicit error
  const json report = json::parse(slurp(s.dir / "r.json"));
  CHECK(report["requests"]["sent"] == 10);
  CHECK(report["requests"]["answered"] == 2);  // the dog, twice round the five files
  CHECK(report["requests"]["errors_by_status"]["400"] == 8);
  CHECK(report["requests"]["lost"] == 0);
  CHECK(report["workers"][0]["served"] == 2);
}

TEST_CASE("a missing or unreadable model is a clear start-up error naming the path") {
  Scratch s("bad-model");
  auto run = zyolo("run --model /nonexistent/model.onnx --requests 5");
  CHECK(run.code == 2);
  CHECK(has(run.err, "/nonexistent/model.onnx"));

  const auto junk = s.dir / "junk.onnx";
  std::ofstream(junk, std::ios::binary) << std::string(4096, '\x07');
  run = zyolo("run --model " + junk.string() + " --requests 5");
  CHECK(run.code == 3);
  CHECK(has(run.err, junk.string()));

  fs::copy_file(shared("models/yolo-fastest-1.1.cfg"), s.dir / "lonely.cfg");
  run = zyolo("run --model " + (s.dir / "lonely.cfg").string() + " --requests 5");
  CHECK(run.code == 2);
  CHECK(has(run.err, "lonely.weights"));
}

TEST_CASE("two pools in one fleet: each request is answered by a worker of the service it asked for") {
  Scratch s("pools");
  std::ofstream(s.dir / "pools.toml") << "[[pools]]\nservice = \"yolo.fastest\"\nmodel = \""
                                      << shared("models/yolo-fastest-1.1.cfg")
                                      << "\"\nworkers = 1\n\n[[pools]]\nservice = \"yolo.fastest-xl\"\nmodel = \""
                                      << shared("models/yolo-fastest-1.1-xl.weights") << "\"\nworkers = 2\n";
  const std::string images = fs::path(shared("images/dog.jpg")).parent_path().string();
  auto run = zyolo("run --quiet --config " + (s.dir / "pools.toml").string() + " --images " + images +
                       " --clients 4 --requests 40 --save-detections " + (s.dir / "d.jsonl").string() +
                       " --report " + (s.dir / "r.json").string());
  INFO(run.out, run.err);
  REQUIRE(run.code == 0);
  const json report = json::parse(slurp(s.dir / "r.json"));
  CHECK(report["requests"]["answered"] == 40);
  CHECK(report["requests"]["wrong_service"] == 0);
  REQUIRE(report["run"]["pools"].size() == 2);
  for (const auto& pool : report["run"]["pools"]) CHECK(pool["answered"] == 20);  // 2 clients each
  std::map<std::string, long> served;
  for (const auto& w : report["workers"]) served[w["service"]] += w["served"].get<long>();
  CHECK(served["yolo.fastest"] == 20);
  CHECK(served["yolo.fastest-xl"] == 20);
  CHECK(report["broker"]["services"].contains("yolo.fastest"));
  CHECK(report["broker"]["services"].contains("yolo.fastest-xl"));
  const auto lines = json_lines(slurp(s.dir / "d.jsonl"));
  REQUIRE(lines.size() == 40);
  for (const auto& line : lines) CHECK(line["worker_service"] == line["service"]);
}

TEST_CASE("with no model given or found, the run says so in one line and simulates") {
  Scratch s("auto");
  std::ofstream(s.dir / "auto.toml") << "[worker]\nmodel = \"auto\"\nauto_models = \"/nonexistent/a.onnx\"\n";
  auto run = zyolo("run --quiet --config " + (s.dir / "auto.toml").string() + " --requests 20");
  CHECK(run.code == 0);
  CHECK(has(run.err, "no YOLO model found"));
  CHECK(has(run.err, "--model none"));
  CHECK(has(run.out, "model none"));
  CHECK(has(run.out, "answered 20 "));
}

TEST_CASE("zyolo detect, the binary, matches the reference decoder for every model and image") {
  const json ref = json::parse(slurp(fs::path(ZYOLO_SOURCE_DIR) / "tests/data/reference_detections.json"));
  const std::string images = fs::path(shared("images/dog.jpg")).parent_path().string();
  int checked = 0;
  for (const auto& [name, model] : ref["models"].items()) {
    CAPTURE(name);
    std::string args = "detect --json --model " + shared("models/" + model["file"].get<std::string>());
    std::vector<std::string> order;
    for (const auto& [image, _] : model["images"].items()) {
      args += " " + images + "/" + image;
      order.push_back(image);
    }
    auto run = zyolo(args);
    INFO(run.err);
    REQUIRE(run.code == 0);
    const auto lines = json_lines(run.out);
    REQUIRE(lines.size() == order.size());
    for (std::size_t i = 0; i < order.size(); ++i) {
      CAPTURE(order[i]);
      const json& want = model["images"][order[i]]["detections"];
      const json& got = lines[i]["detections"];
      REQUIRE(got.size() == want.size());
      // Each reference detection has its own match: same class, conf within 0.02, box edges
      // (reference xyxy, truncated to whole pixels) within 3 px.
      std::vector<bool> used(got.size(), false);
      for (const auto& w : want) {
        bool found = false;
        for (std::size_t k = 0; k < got.size() && !found; ++k) {
          const auto& g = got[k];
          const double x = g["box"][0], y = g["box"][1], bw = g["box"][2], bh = g["box"][3];
          const double edges[] = {x, y, x + bw, y + bh};
          bool close = !used[k] && g["class_id"] == w["class_id"] &&
                       std::abs(g["confidence"].get<double>() - w["confidence"].get<double>()) <= 0.02;
          for (int e = 0; e < 4 && close; ++e) close = std::abs(edges[e] - w["xyxy"][e].get<double>()) <= 3.0;
          if (close) used[k] = found = true;
        }
        CHECK_MESSAGE(found, "no match for " << w.dump());
        ++checked;
      }
    }
  }
  CHECK(checked >= 30);  // every model, every image
}
