// core/pil_resample.h against Pillow (tests/reference/make_resize_grid.py): 894 resizes over
// portrait, landscape and square sizes, up and down, integer and non-integer factors, one-pixel
// sides, three filters and 1 or 3 channels, each bit for bit; and Pillow 13's pass order.
#include "core/pil_resample.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/safetensors.h"
#include "test_paths.h"

namespace xltune {
namespace {

std::string grid_dir() { return std::string(xltune::test_paths::testdata_dir()) + "/resize_grid"; }

PilFilter filter_named(const std::string& name) {
  if (name == "bilinear") return PilFilter::kBilinear;
  if (name == "bicubic") return PilFilter::kBicubic;
  EXPECT_EQ(name, "lanczos");
  return PilFilter::kLanczos;
}

TEST(PilResampleGrid, EveryResizeEqualsPillowBitForBit) {
  const auto grid = nlohmann::json::parse(read_file(grid_dir() + "/grid.json"));
  SafetensorsFile dump(grid_dir() + "/grid.safetensors");
  int checked = 0, vertical_first = 0;
  for (const auto& c : grid["cases"]) {
    const at::Tensor in = dump.tensor_copy(c["input"].get<std::string>());
    const at::Tensor want = dump.tensor(c["output"].get<std::string>());
    const int w = c["width"], h = c["height"], ch = c["channels"], ow = c["out_width"], oh = c["out_height"];
    std::vector<uint8_t> got = pil_resize(in.data_ptr<uint8_t>(), w, h, ch, ow, oh, filter_named(c["filter"]));
    ASSERT_EQ(got.size(), static_cast<size_t>(want.numel())) << c["output"];
    const at::Tensor mine = at::from_blob(got.data(), want.sizes(), at::kByte).to(at::kInt);
    const int worst = (mine - want.to(at::kInt)).abs().max().item<int>();
    EXPECT_EQ(worst, 0) << c["output"].get<std::string>() << " (Pillow " << grid["pillow"].get<std::string>()
                        << "): largest difference " << worst << " levels";
    vertical_first += pil_resizes_vertically_first(w, h, ow, oh) && ow != w;
    ++checked;
  }
  EXPECT_EQ(checked, 894);
  EXPECT_GT(vertical_first, 100);  // both of Pillow 13's pass orders are exercised
}

// The rule as Pillow 13 writes it: height shrinks by more than twice as many pixels as width.
TEST(PilResampleOrder, VerticalFirstWhenHeightShrinksMoreThanTwiceTheWidth) {
  EXPECT_TRUE(pil_resizes_vertically_first(72, 100, 96, 96));    // width grows, height shrinks
  EXPECT_TRUE(pil_resizes_vertically_first(72, 100, 48, 48));    // 52 > 2 * 24
  EXPECT_FALSE(pil_resizes_vertically_first(72, 96, 48, 48));    // 48 = 2 * 24: not more
  EXPECT_FALSE(pil_resizes_vertically_first(90, 120, 48, 48));   // 72 < 2 * 42
  EXPECT_FALSE(pil_resizes_vertically_first(100, 72, 96, 96));   // a landscape photo: height grows
  EXPECT_TRUE(pil_resizes_vertically_first(96, 96, 100, 72));    // the mask back to a landscape photo
  EXPECT_FALSE(pil_resizes_vertically_first(96, 96, 72, 100));   // height grows
  EXPECT_FALSE(pil_resizes_vertically_first(3024, 4032, 352, 352));  // a phone photo: 3680 < 2 * 2672
}

}  // namespace
}  // namespace xltune
