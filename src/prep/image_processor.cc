#include "prep/image_processor.h"

#include <ATen/ATen.h>

#include <nlohmann/json.hpp>
#include <vector>

#include "core/check.h"
#include "prep/hub_config.h"

namespace xltune {

ImageProcessorConfig ImageProcessorConfig::from_json_text(const std::string& text, const std::string& source) {
  const nlohmann::json j = parse_config_object(text, source);
  ImageProcessorConfig c;
  c.do_resize = j.value("do_resize", true);
  if (j.contains("size") && !j["size"].is_null()) {
    const auto& s = j["size"];
    if (s.is_number_integer()) {
      c.height = c.width = s.get<int64_t>();
    } else {
      XLTUNE_CHECK(s.is_object() && s.contains("height") && s.contains("width"), source,
                   ": \"size\": expected {\"height\": H, \"width\": W} or a number");
      c.height = s["height"].get<int64_t>(), c.width = s["width"].get<int64_t>();
    }
    XLTUNE_CHECK(c.height > 0 && c.width > 0, source, ": \"size\": expected positive sizes");
  }
  const int resample = j.value("resample", 2);
  XLTUNE_CHECK(resample == 1 || resample == 2 || resample == 3, source, ": \"resample\" ", resample,
               ": expected 1 (lanczos), 2 (bilinear) or 3 (bicubic)");
  c.resample = resample == 1 ? PilFilter::kLanczos : resample == 2 ? PilFilter::kBilinear : PilFilter::kBicubic;
  c.do_rescale = j.value("do_rescale", true);
  c.rescale_factor = j.value("rescale_factor", 1.0 / 255);
  c.do_normalize = j.value("do_normalize", true);
  auto triple = [&](const char* key, std::array<double, 3>& out) {
    if (!j.contains(key) || j[key].is_null()) return;
    XLTUNE_CHECK(j[key].is_array() && j[key].size() == 3, source, ": \"", key, "\": expected 3 numbers");
    for (int i = 0; i < 3; ++i) out[i] = j[key][i].get<double>();
  };
  triple("image_mean", c.image_mean);
  triple("image_std", c.image_std);
  return c;
}

at::Tensor process_image(const ImageProcessorConfig& c, const uint8_t* rgb, int width, int height) {
  std::vector<uint8_t> resized;
  int w = width, h = height;
  if (c.do_resize) {
    w = static_cast<int>(c.width), h = static_cast<int>(c.height);
    resized = pil_resize(rgb, width, height, 3, w, h, c.resample);
    rgb = resized.data();
  }
  // numpy: uint8 -> float64 * factor -> float32; then (x - mean) / std in float32.
  at::Tensor x = at::from_blob(const_cast<uint8_t*>(rgb), {h, w, 3}, at::kByte).to(at::kDouble);
  if (c.do_rescale) x = x * c.rescale_factor;
  x = x.to(at::kFloat);
  if (c.do_normalize) {
    at::Tensor mean = at::tensor(std::vector<double>(c.image_mean.begin(), c.image_mean.end())).to(at::kFloat);
    at::Tensor std = at::tensor(std::vector<double>(c.image_std.begin(), c.image_std.end())).to(at::kFloat);
    x = (x - mean) / std;
  }
  return x.permute({2, 0, 1}).unsqueeze(0).contiguous();
}

}  // namespace xltune
