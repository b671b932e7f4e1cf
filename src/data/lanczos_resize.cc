#include "data/lanczos_resize.h"

#include <opencv2/core.hpp>

#include "core/check.h"
#include "core/pil_resample.h"

namespace xltune {

cv::Mat lanczos_resize(const cv::Mat& src, int width, int height) {
  XLTUNE_CHECK(width > 0 && height > 0 && !src.empty(), "lanczos_resize: bad size ", src.cols, "x", src.rows, " -> ",
               width, "x", height);
  XLTUNE_CHECK(src.depth() == CV_8U, "lanczos_resize: expected 8-bit samples, got OpenCV depth ", src.depth());
  XLTUNE_CHECK(src.channels() == 1 || src.channels() == 3, "lanczos_resize: expected 1 or 3 channels, got ",
               src.channels());
  const cv::Mat in = src.isContinuous() ? src : src.clone();
  std::vector<uint8_t> out = pil_resize(in.ptr<uint8_t>(0), in.cols, in.rows, in.channels(), width, height,
                                        PilFilter::kLanczos);
  return cv::Mat(height, width, src.type(), out.data()).clone();
}

}  // namespace xltune
