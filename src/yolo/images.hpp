// The images clients send: every .jpg/.jpeg/.png of a folder, or images synthesised at start-up.
#pragma once

#include <string>
#include <vector>

namespace zyolo {

struct Image {
  std::string name;   // the file name, or "synthetic-N.jpg"
  std::string bytes;  // encoded (JPEG/PNG), sent as is
};

// Every .jpg, .jpeg and .png file of `dir`, sorted by name. Throws ConfigError naming `dir` when
// it is missing or holds no such file (a file that is not a valid image is still sent: the
// workers answer it 400).
std::vector<Image> load_images(const std::string& dir);

// `count` JPEG images of shapes on a gradient, different for each `seed`.
std::vector<Image> synthesize_images(int count, unsigned seed);

}  // namespace zyolo
