// Face masks from OpenCV's Haar face detector (haarcascade_frontalface_default.xml from
// opencv-data), for --use_face_detection_instead.
//
// The reference uses MediaPipe (detection, then a face mesh), fills the face oval with 255 and
// adds 50, so the face is 255 and everything else 50; no face gives an all-255 mask. It makes
// one mask per *detection*, so an image with two faces shifts every later mask onto the wrong
// image. Here each image gets exactly one mask: the union of all its faces, each an ellipse
// over the detector's box stretched down to the chin and up to the forehead (the Haar box
// spans brows to mouth); same values (face 255, background 50, no face all 255).
//
// The salience crop then follows the reference's rule on this mask, background included: on a
// very wide photo (3:1) the background's weight pulls the crop towards the middle and can cut
// the face, as in the reference. Usual framings (4:3, 3:4, 16:9 with the face off the edge)
// keep the face (tested).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <opencv2/core/mat.hpp>

#include "core/image.h"
#include "core/image_models.h"

namespace cv {
class CascadeClassifier;
}

namespace xltune {

// The cascade file: $XLTUNE_FACE_CASCADE, else the opencv-data install folders. Throws Error
// listing where it looked.
std::string find_face_cascade();

class FaceMasker : public MaskProvider {
 public:
  static constexpr uint8_t kFace = 255;
  static constexpr uint8_t kBackground = 50;  // the reference's bias

  // Loads the cascade (find_face_cascade() when `cascade_path` is empty).
  explicit FaceMasker(const std::string& cascade_path = "");
  ~FaceMasker() override;

  // Face boxes in `rgb` (CV_8UC3), in its pixels, largest first.
  std::vector<cv::Rect> detect(const cv::Mat& rgb);
  // CV_8UC1 of rgb's size; *faces (if given) receives the number found.
  cv::Mat mask(const cv::Mat& rgb, int* faces = nullptr);

  std::string name() const override { return "face detection"; }
  Image mask(ImageView rgb, const std::string& sample_name) override;

 private:
  std::unique_ptr<cv::CascadeClassifier> cascade_;
  std::string path_;
};

}  // namespace xltune
