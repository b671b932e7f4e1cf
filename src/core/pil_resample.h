// Pillow's Image.resize on 8-bit images, bit for bit (libImaging/Resample.c): separable, the
// filter widened by the scale factor when shrinking (so it low-pass filters), weights
// normalised per output pixel, fixed point with 22 fraction bits, the horizontal pass first,
// rounded to 8 bits between the passes. Plain buffers, so that parts without OpenCV (the
// preprocessing models' image processors) resize exactly as transformers' PIL backend does;
// data/lanczos_resize.h is the OpenCV face of the same code.
//
// Pass order: Pillow up to 12 always resamples horizontally first, as here. Pillow 13
// (python-pillow/Pillow#9549) runs the vertical pass first when the height shrinks much more
// than the width; then results can differ by 1 in a few pixels.
#pragma once

#include <cstdint>
#include <vector>

namespace xltune {

enum class PilFilter { kBilinear, kBicubic, kLanczos };  // Image.BILINEAR, BICUBIC, LANCZOS

// `pixels`: height rows of width * channels bytes (1 to 4 interleaved channels). Returns
// out_height rows of out_width * channels bytes.
std::vector<uint8_t> pil_resize(const uint8_t* pixels, int width, int height, int channels, int out_width,
                                int out_height, PilFilter filter);

}  // namespace xltune
