#include "core/image.h"

#include "core/check.h"

namespace xltune {

Image Image::filled(int width, int height, int channels, uint8_t fill) {
  XLTUNE_CHECK(width >= 0 && height >= 0 && channels >= 1, "image of ", width, "x", height, "x", channels,
               ": expected a non-negative size and at least 1 channel");
  Image image{width, height, channels, {}};
  image.pixels.assign(static_cast<size_t>(width) * height * channels, fill);
  return image;
}

void check_image(const ImageView& image, int channels, const std::string& what) {
  XLTUNE_CHECK(image.pixels != nullptr && image.width > 0 && image.height > 0, what, ": expected an image, got ",
               image.width, "x", image.height);
  XLTUNE_CHECK(image.channels == channels, what, ": expected ", channels, channels == 1 ? " channel" : " channels",
               ", got ", image.channels);
}

void check_image(const Image& image, int channels, const std::string& what) {
  check_image(ImageView(image), channels, what);
  XLTUNE_CHECK(image.pixels.size() == ImageView(image).bytes(), what, ": ", image.pixels.size(), " bytes for a ",
               image.width, "x", image.height, "x", image.channels, " image");
}

}  // namespace xltune
