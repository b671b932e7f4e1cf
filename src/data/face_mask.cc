#include "data/face_mask.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstdlib>

#include <opencv2/imgproc.hpp>
#include <opencv2/objdetect.hpp>

#include "core/check.h"
#include "data/image_convert.h"

namespace xltune {

namespace {
constexpr const char* kCascadeName = "haarcascade_frontalface_default.xml";
// Detection runs on a copy whose longer side is at most this: Haar cost grows with the pixel
// count, and faces worth cropping on are far larger than the detector's 24 px window.
constexpr int kDetectSide = 1024;

bool is_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}
}  // namespace

std::string find_face_cascade() {
  std::vector<std::string> tried;
  if (const char* env = std::getenv("XLTUNE_FACE_CASCADE"); env != nullptr && *env != '\0') {
    XLTUNE_CHECK(is_file(env), "XLTUNE_FACE_CASCADE=", env, ": no such file");
    return env;
  }
  for (const char* dir : {"/usr/share/opencv4/haarcascades", "/usr/local/share/opencv4/haarcascades",
                          "/usr/share/opencv/haarcascades", "/usr/local/share/opencv/haarcascades"}) {
    std::string path = std::string(dir) + "/" + kCascadeName;
    if (is_file(path)) return path;
    tried.push_back(dir);
  }
  std::string list;
  for (const auto& t : tried) list += (list.empty() ? "" : ", ") + t;
  XLTUNE_FAIL("face detection needs ", kCascadeName, " (package opencv-data); not found in ", list,
              "; set XLTUNE_FACE_CASCADE to its path");
}

FaceMasker::FaceMasker(const std::string& cascade_path)
    : cascade_(std::make_unique<cv::CascadeClassifier>()), path_(cascade_path.empty() ? find_face_cascade() : cascade_path) {
  XLTUNE_CHECK(is_file(path_), "face detection: cascade file ", path_, " does not exist");
  bool loaded = false;
  try {
    loaded = cascade_->load(path_);
  } catch (const cv::Exception& e) {
    XLTUNE_FAIL("face detection: cannot load ", path_, ": ", e.err);
  }
  XLTUNE_CHECK(loaded && !cascade_->empty(), "face detection: ", path_, " is not a Haar cascade OpenCV can load");
}

FaceMasker::~FaceMasker() = default;

std::vector<cv::Rect> FaceMasker::detect(const cv::Mat& rgb) {
  XLTUNE_CHECK(rgb.type() == CV_8UC3, "face detection: expected an 8-bit RGB image");
  const double scale = std::min(1.0, static_cast<double>(kDetectSide) / std::max(rgb.cols, rgb.rows));
  cv::Mat small, grey;
  if (scale < 1.0) cv::resize(rgb, small, cv::Size(), scale, scale, cv::INTER_AREA);
  else small = rgb;
  cv::cvtColor(small, grey, cv::COLOR_RGB2GRAY);
  cv::equalizeHist(grey, grey);
  // Faces smaller than 1/20 of the shorter side are noise for a crop; 5 neighbours keeps the
  // cascade's false positives down (the reference's MediaPipe runs at confidence 0.1, but a
  // mesh step then rejects non-faces, which a cascade does not have).
  const int min_side = std::max(24, std::min(grey.cols, grey.rows) / 20);
  std::vector<cv::Rect> found;
  cascade_->detectMultiScale(grey, found, 1.1, 5, 0, cv::Size(min_side, min_side));
  std::vector<cv::Rect> out;
  for (const auto& r : found) {
    cv::Rect full(static_cast<int>(r.x / scale), static_cast<int>(r.y / scale), static_cast<int>(r.width / scale),
                  static_cast<int>(r.height / scale));
    out.push_back(full & cv::Rect(0, 0, rgb.cols, rgb.rows));
  }
  std::sort(out.begin(), out.end(), [](const cv::Rect& a, const cv::Rect& b) { return a.area() > b.area(); });
  return out;
}

cv::Mat FaceMasker::mask(const cv::Mat& rgb, int* faces) {
  std::vector<cv::Rect> boxes = detect(rgb);
  if (faces != nullptr) *faces = static_cast<int>(boxes.size());
  if (boxes.empty()) return cv::Mat(rgb.rows, rgb.cols, CV_8UC1, cv::Scalar(kFace));
  cv::Mat out(rgb.rows, rgb.cols, CV_8UC1, cv::Scalar(kBackground));
  for (const auto& b : boxes) {
    // The face oval: centred a little below the box centre, 1.3x the box height.
    cv::Point center(b.x + b.width / 2, b.y + b.height / 2 + b.height / 20);
    cv::Size axes(std::max(1, b.width * 45 / 100), std::max(1, b.height * 65 / 100));
    cv::ellipse(out, center, axes, 0, 0, 360, cv::Scalar(kFace), cv::FILLED);
  }
  return out;
}

Image FaceMasker::mask(ImageView rgb, const std::string& sample_name) {
  check_image(rgb, 3, "face detection: image " + sample_name);
  return to_image(mask(mat_view(rgb)));
}

}  // namespace xltune
