// The C++ half of bench/preprocess.py: decode + salience crop + Lanczos resize (image and
// mask) of the same files the Python half runs through PIL, the reference trainer's way.
//
//   xltune_bench_preprocess RESOLUTION REPEATS THREADS FILE...
// Prints one JSON line with the best time of REPEATS passes over all files. THREADS sets
// OpenCV's thread pool (1: one core, as PIL uses).
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "bench_util.h"
#include "core/error.h"
#include "data/crop.h"
#include "data/image_decode.h"
#include "data/lanczos_resize.h"

namespace {
using xltune::bench::now;
}  // namespace

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: %s RESOLUTION REPEATS THREADS FILE...\n", argv[0]);
    return 2;
  }
  const int resolution = std::stoi(argv[1]);
  const int repeats = std::stoi(argv[2]);
  cv::setNumThreads(std::stoi(argv[3]));
  std::vector<std::string> files(argv + 4, argv + argc);
  try {
    double best = 1e30;
    uint64_t checksum = 0;
    for (int r = 0; r < repeats; ++r) {
      double start = now();
      checksum = 0;
      for (const auto& f : files) {
        cv::Mat rgb = xltune::decode_image_file(f, f).rgb;
        // The reference computes the mask's centre of mass for every image (a uniform mask
        // without --mask_target_prompts); so do both sides here.
        cv::Mat mask(rgb.rows, rgb.cols, CV_8UC1, cv::Scalar(255));
        xltune::CropBox box = xltune::salience_crop_box(mask);
        cv::Rect rect(box.left, box.top, box.size, box.size);
        cv::Mat image = xltune::lanczos_resize(rgb(rect), resolution, resolution);
        cv::Mat m = xltune::lanczos_resize(mask(rect), resolution, resolution);
        checksum += image.at<cv::Vec3b>(resolution / 2, resolution / 2)[0] + m.at<uint8_t>(0, 0);
      }
      best = std::min(best, now() - start);
    }
    std::printf("{\"impl\": \"xltune\", \"seconds\": %.6f, \"images\": %zu, \"checksum\": %llu}\n", best, files.size(),
                static_cast<unsigned long long>(checksum));
  } catch (const std::exception& e) {  // c10::Error too (a CUDA error): one message, never std::terminate
    std::fprintf(stderr, "xltune_bench_preprocess: %s\n", e.what());
    return 1;
  }
  return 0;
}
