// Pillow's Image.resize on 8-bit images, bit for bit (libImaging/Resample.c): separable, the
// filter widened by the scale factor when shrinking (so it low-pass filters), weights
// normalised per output pixel, fixed point with 22 fraction bits, two passes (order below)
// rounded to 8 bits between them. Plain buffers, so that parts without OpenCV (the
// preprocessing models' image processors) resize exactly as transformers' PIL backend does;
// data/lanczos_resize.h is the OpenCV face of the same code.
//
// Pass order, which moves results by 1 level in some pixels: Pillow 13 (the version the
// reference checks pin, launch/requirements.txt) runs the vertical pass first when the height
// shrinks by more than twice as many pixels as the width (pil_resizes_vertically_first), else
// the horizontal pass first over only the rows the vertical pass reads; Pillow 12 and earlier
// always run horizontally first. A 1-level difference in a processor's input can move a small
// model's output far (a 72x100 photo's CLIPSeg mask moved by up to 101 of 255 before this
// followed Pillow 13), so the order is Pillow's, not ours.
#pragma once

#include <cstdint>
#include <vector>

namespace xltune {

enum class PilFilter { kBilinear, kBicubic, kLanczos };  // Image.BILINEAR, BICUBIC, LANCZOS

// `pixels`: height rows of width * channels bytes (1 to 4 interleaved channels). Returns
// out_height rows of out_width * channels bytes.
std::vector<uint8_t> pil_resize(const uint8_t* pixels, int width, int height, int channels, int out_width,
                                int out_height, PilFilter filter);

// Whether Pillow 13 resizes width x height -> out_width x out_height vertically first.
bool pil_resizes_vertically_first(int width, int height, int out_width, int out_height);

}  // namespace xltune
