#include "prep/swin2sr_upscaler.h"

#include <ATen/ATen.h>
#include <torch/torch.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/check.h"
#include "prep/hub_config.h"

namespace xltune {
namespace {

Swin2SrProcessorConfig swin2sr_processor_of(const std::string& dir) {
  const std::string text = read_hub_file(dir, "preprocessor_config.json", "--upscaler_model");
  return Swin2SrProcessorConfig::from_json_text(text, dir + "/preprocessor_config.json");
}

// numpy.pad(mode="symmetric") on one side: the indices of a side of n padded to n + pad.
std::vector<int64_t> symmetric_indices(int64_t n, int64_t pad) {
  std::vector<int64_t> index;
  for (int64_t i = 0; i < n + pad; ++i) {
    const int64_t j = i % (2 * n);
    index.push_back(j < n ? j : 2 * n - 1 - j);
  }
  return index;
}

// Where tiles of `tile` start on an axis of `length`, `stride` apart, the last flush with the end.
std::vector<int64_t> tile_starts(int64_t length, int64_t tile, int64_t stride) {
  if (tile >= length) return {0};
  std::vector<int64_t> starts;
  for (int64_t p = 0; p + tile < length; p += stride) starts.push_back(p);
  starts.push_back(length - tile);
  return starts;
}

// A tile's blending weight along one axis, in output pixels: 0 over the outer quarter of an
// overlap shared with a neighbour, linear over its middle half, 1 elsewhere.
at::Tensor axis_weight(int64_t start, int64_t tile, int64_t length, int64_t overlap, int64_t scale) {
  const int64_t n = tile * scale;
  at::Tensor w = at::ones({n}, at::kDouble);
  if (overlap == 0) return w;
  at::Tensor from_start = at::arange(n, at::kDouble) + 0.5, from_end = static_cast<double>(n) - from_start;
  const double margin = scale * overlap / 4.0, ramp = scale * overlap / 2.0;
  if (start > 0) w = at::minimum(w, ((from_start - margin) / ramp).clamp(0, 1));
  if (start + tile < length) w = at::minimum(w, ((from_end - margin) / ramp).clamp(0, 1));
  return w;
}

}  // namespace

Swin2SrProcessorConfig Swin2SrProcessorConfig::from_json_text(const std::string& text, const std::string& source) {
  const nlohmann::json j = parse_config_object(text, source);
  Swin2SrProcessorConfig c;
  c.do_rescale = config_bool(j, "do_rescale", c.do_rescale, source);
  c.do_pad = config_bool(j, "do_pad", c.do_pad, source);
  c.rescale_factor = config_number(j, "rescale_factor", c.rescale_factor, source);
  // transformers 5: size_divisor; older files: pad_size (used only when size_divisor is missing).
  for (const char* key : {"pad_size", "size_divisor"}) {
    if (!j.contains(key) || j[key].is_null()) continue;
    XLTUNE_CHECK(j[key].is_number_integer() && j[key].get<int64_t>() >= 1, source, ": \"", key,
                 "\": expected a positive integer");
    c.size_divisor = j[key].get<int64_t>();
  }
  return c;
}

int64_t Swin2SrProcessorConfig::padded(int64_t side) const {
  return do_pad ? (side / size_divisor + 1) * size_divisor : side;
}

at::Tensor swin2sr_pixels(const Swin2SrProcessorConfig& c, const uint8_t* rgb, int width, int height) {
  XLTUNE_CHECK(rgb != nullptr && width > 0 && height > 0, "Swin2SR processor: expected an image, got ", width, "x",
               height);
  at::Tensor x = at::from_blob(const_cast<uint8_t*>(rgb), {height, width, 3}, at::kByte).to(at::kDouble);
  if (c.do_rescale) x = x * c.rescale_factor;
  x = x.to(at::kFloat).permute({2, 0, 1});
  if (c.do_pad) {
    const auto lo = at::TensorOptions().dtype(at::kLong);
    x = x.index_select(1, at::tensor(symmetric_indices(height, c.padded(height) - height), lo));
    x = x.index_select(2, at::tensor(symmetric_indices(width, c.padded(width) - width), lo));
  }
  return x.unsqueeze(0).contiguous();
}

Swin2SrUpscaler::Swin2SrUpscaler(const std::string& dir, const at::TensorOptions& options)
    : dir_(dir), model_(load_swin2sr(dir, options)), processor_(swin2sr_processor_of(dir)), options_(options) {
  const Swin2SrConfig& c = model_->config();
  XLTUNE_CHECK(c.num_channels == 3 && c.num_channels_out == 3, "--upscaler_model ", dir, ": the model takes ",
               c.num_channels, " channels and gives ", c.num_channels_out, "; the upscaler needs RGB in and out");
}

void Swin2SrUpscaler::set_tiling(int tile, int overlap) {
  XLTUNE_CHECK(tile >= 0, "--tile: expected 0 (untiled) or a number of pixels, got ", tile);
  XLTUNE_CHECK(overlap >= 0, "--overlap: expected a number of pixels, got ", overlap);
  XLTUNE_CHECK(tile == 0 || overlap < tile, "--overlap ", overlap, ": expected fewer pixels than --tile ", tile);
  tile_ = tile, overlap_ = overlap;
}

void Swin2SrUpscaler::set_batch(int tiles) {
  XLTUNE_CHECK(tiles >= 1, "Swin2SR: expected at least 1 tile per batch, got ", tiles);
  batch_ = tiles;
}

at::Tensor Swin2SrUpscaler::reconstruct(const at::Tensor& pixels) {
  torch::NoGradGuard no_grad;
  XLTUNE_CHECK(pixels.dim() == 4, "Swin2SR: expected pixels [B, C, H, W], got ", pixels.sizes());
  const int64_t ws = model_->config().window_size;
  auto round_up = [ws](int64_t v) { return (v + ws - 1) / ws * ws; };
  const int64_t side = std::max(round_up(pixels.size(2)), round_up(pixels.size(3)));
  if (tile_ == 0 || round_up(tile_) >= side) return model_->forward(pixels).to(at::kFloat).cpu();
  std::vector<at::Tensor> out;
  for (int64_t b = 0; b < pixels.size(0); ++b) out.push_back(reconstruct_tiled(pixels.slice(0, b, b + 1)));
  return at::cat(out, 0);
}

at::Tensor Swin2SrUpscaler::reconstruct_tiled(const at::Tensor& pixels) {
  const Swin2SrConfig& c = model_->config();
  const int64_t ws = c.window_size, s = c.upscale, height = pixels.size(2), width = pixels.size(3);
  auto round_up = [ws](int64_t v) { return (v + ws - 1) / ws * ws; };
  // The model's own padding first, so that every tile is a whole number of windows on its grid.
  at::Tensor x = pixels.to(options_.device(), at::kFloat);
  const int64_t pad_h = round_up(height) - height, pad_w = round_up(width) - width;
  if (pad_h > 0 || pad_w > 0) {
    XLTUNE_CHECK(pad_h < height && pad_w < width, "Swin2SR: a ", width, "x", height,
                 " input is too small to reflect-pad to a multiple of the window ", ws);
    x = at::reflection_pad2d(x, {0, pad_w, 0, pad_h});
  }
  const int64_t hp = x.size(2), wp = x.size(3);
  const int64_t th = std::min(round_up(tile_), hp), tw = std::min(round_up(tile_), wp);
  const int64_t overlap = round_up(overlap_);
  XLTUNE_CHECK((th == hp || overlap < th) && (tw == wp || overlap < tw), "Swin2SR tiling: --overlap ", overlap_,
               " (", overlap, " on the window grid) leaves no stride in tiles of ", th, "x", tw);
  struct Tile {
    int64_t y, x;
  };
  std::vector<Tile> tiles;
  for (int64_t ty : tile_starts(hp, th, th - overlap))
    for (int64_t tx : tile_starts(wp, tw, tw - overlap)) tiles.push_back({ty, tx});

  const auto f32 = at::TensorOptions().dtype(at::kFloat).device(options_.device());
  at::Tensor sum = at::zeros({1, c.num_channels_out, hp * s, wp * s}, f32);
  at::Tensor weight = at::zeros({1, 1, hp * s, wp * s}, f32);
  for (size_t first = 0; first < tiles.size(); first += static_cast<size_t>(batch_)) {
    const size_t last = std::min(tiles.size(), first + static_cast<size_t>(batch_));
    std::vector<at::Tensor> inputs;
    for (size_t i = first; i < last; ++i)
      inputs.push_back(x.slice(2, tiles[i].y, tiles[i].y + th).slice(3, tiles[i].x, tiles[i].x + tw));
    const at::Tensor y = model_->forward(at::cat(inputs, 0)).to(at::kFloat);
    for (size_t i = first; i < last; ++i) {
      const Tile& t = tiles[i];
      at::Tensor w = at::outer(axis_weight(t.y, th, hp, overlap, s), axis_weight(t.x, tw, wp, overlap, s))
                         .to(f32)
                         .view({1, 1, th * s, tw * s});
      auto region = [&](const at::Tensor& a) {
        return a.slice(2, t.y * s, (t.y + th) * s).slice(3, t.x * s, (t.x + tw) * s);
      };
      region(sum).add_(y.slice(0, static_cast<int64_t>(i - first), static_cast<int64_t>(i - first) + 1) * w);
      region(weight).add_(w);
    }
  }
  return (sum / weight).slice(2, 0, height * s).slice(3, 0, width * s).cpu();
}

Image Swin2SrUpscaler::upscale(ImageView rgb, const std::string&) {
  check_image(rgb, 3, "Swin2SR");
  const at::Tensor pixels = swin2sr_pixels(processor_, rgb.pixels, rgb.width, rgb.height);
  const int s = scale();
  // cog-sdxl: reconstruction.float().cpu().clamp_(0, 1), * 255.0, .round().astype(np.uint8), HWC.
  at::Tensor r = reconstruct(pixels)[0].slice(1, 0, int64_t{rgb.height} * s).slice(2, 0, int64_t{rgb.width} * s);
  at::Tensor bytes = at::round(r.clamp(0, 1) * 255.0).to(at::kByte).permute({1, 2, 0}).contiguous();
  Image out{rgb.width * s, rgb.height * s, 3, {}};
  out.pixels.assign(bytes.data_ptr<uint8_t>(), bytes.data_ptr<uint8_t>() + bytes.numel());
  return out;
}

}  // namespace xltune
