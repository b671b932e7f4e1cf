// The OpenCV faces of resizing against Pillow (tests/reference/make_resize_grid.py):
// data/lanczos_resize.h (training crops and masks, generate's img2img and inpainting inputs) bit
// for bit on every Lanczos case of the grid; the contact sheet's thumbnails (the same Lanczos).
#include "data/lanczos_resize.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>

#include "core/atomic_file.h"
#include "core/safetensors.h"
#include "data/contact_sheet.h"
#include "test_paths.h"

namespace xltune {
namespace {

std::string grid_dir() { return std::string(xltune::test_paths::testdata_dir()) + "/resize_grid"; }

cv::Mat as_mat(const at::Tensor& t) {  // [H, W, C] uint8 -> a cv::Mat of its own
  const int c = static_cast<int>(t.size(2));
  return cv::Mat(static_cast<int>(t.size(0)), static_cast<int>(t.size(1)), CV_8UC(c), t.data_ptr()).clone();
}

int worst_difference(const cv::Mat& got, const at::Tensor& want) {
  const at::Tensor mine = at::from_blob(got.data, want.sizes(), at::kByte).to(at::kInt);
  return (mine - want.to(at::kInt)).abs().max().item<int>();
}

TEST(ResizeGrid, LanczosResizeEqualsPillowBitForBit) {
  const auto grid = nlohmann::json::parse(read_file(grid_dir() + "/grid.json"));
  SafetensorsFile dump(grid_dir() + "/grid.safetensors");
  int checked = 0;
  for (const auto& c : grid["cases"]) {
    if (c["filter"] != "lanczos") continue;
    const cv::Mat in = as_mat(dump.tensor_copy(c["input"].get<std::string>()));
    const at::Tensor want = dump.tensor(c["output"].get<std::string>());
    const cv::Mat got = lanczos_resize(in, c["out_width"], c["out_height"]);
    ASSERT_TRUE(got.isContinuous());
    ASSERT_EQ(got.total() * got.channels(), static_cast<size_t>(want.numel())) << c["output"];
    EXPECT_EQ(worst_difference(got, want), 0) << c["output"].get<std::string>();
    ++checked;
  }
  EXPECT_EQ(checked, 298);
}

// The contact sheet's thumbnails are Pillow's Lanczos of the crop and mask, bit for bit.
TEST(ResizeGrid, ContactSheetThumbnailsEqualPillowsLanczos) {
  const auto grid = nlohmann::json::parse(read_file(grid_dir() + "/grid.json"));
  SafetensorsFile dump(grid_dir() + "/grid.safetensors");
  int checked = 0;
  for (const auto& c : grid["thumbnails"]) {
    if (c["channels"] != 3) continue;
    const std::string size = std::to_string(c["width"].get<int>()) + "x" + std::to_string(c["height"].get<int>());
    ContactSheet sheet;
    sheet.add(as_mat(dump.tensor_copy("photo." + size + "x3")), as_mat(dump.tensor_copy("photo." + size + "x1")), "x",
              "y");
    const cv::Mat page = sheet.render();
    // contact_sheet.cc's kGap: the first tile's corner; the thumbnail keeps the photo's shape.
    const int side = ContactSheet::kThumb, gap = 8, w = c["out_width"].get<int>(), h = c["out_height"].get<int>();
    const cv::Mat rgb = page(cv::Rect(gap, gap, w, h)).clone();
    cv::Mat grey;
    cv::extractChannel(page(cv::Rect(gap + side + gap, gap, w, h)), grey, 0);
    EXPECT_EQ(worst_difference(rgb, dump.tensor("thumb." + size + "x3")), 0) << size;
    EXPECT_EQ(worst_difference(grey, dump.tensor("thumb." + size + "x1").squeeze(2)), 0) << size;
    ++checked;
  }
  EXPECT_EQ(checked, 5);
}

}  // namespace
}  // namespace xltune
