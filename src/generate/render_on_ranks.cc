#include "generate/render_on_ranks.h"

#include <ATen/ATen.h>

#include "core/check.h"

namespace xltune {

RenderedImages render_on_ranks(SdxlPipeline& pipe, GenerationRequest r, Communicator& comm, at::Device device,
                               bool with_latents, const std::function<void(int64_t, int64_t)>& progress) {
  r.only.clear();
  for (int64_t i = comm.rank(); i < r.num_outputs; i += comm.size()) r.only.push_back(i);
  GenerationResult res;
  if (!r.only.empty()) res = pipe.generate(r, progress);
  const int64_t f = pipe.vae_scale_factor();
  const bool img2img = r.image.defined() && !r.mask.defined();
  const int64_t H = img2img ? r.image.size(2) : r.height, W = img2img ? r.image.size(3) : r.width;
  // Each rank fills its rows of zeros; a sum over the ranks is then every row (exact: one
  // non-zero term per element).
  at::Tensor pixels = at::zeros({r.num_outputs, H, W, 3}, at::kFloat);
  at::Tensor latents;
  if (with_latents) latents = at::zeros({r.num_outputs, pipe.latent_channels(), H / f, W / f}, at::kFloat);
  for (size_t j = 0; j < r.only.size(); ++j) {
    pixels[r.only[j]].copy_(res.pixels[static_cast<int64_t>(j)]);
    if (with_latents) latents[r.only[j]].copy_(res.latents[static_cast<int64_t>(j)]);
  }
  if (comm.size() > 1) {
    for (at::Tensor* t : {&pixels, &latents}) {
      if (!t->defined()) continue;
      at::Tensor wire = t->to(device);
      comm.start_all_reduce_sum(wire)->wait();
      *t = wire.cpu();
    }
  }
  RenderedImages out;
  if (comm.rank() != 0) return out;
  out.pixels = pixels.round().to(at::kByte).contiguous();
  out.latents = latents;
  return out;
}

at::Tensor image_grid(const at::Tensor& pixels, int64_t columns) {
  const int64_t n = pixels.size(0), H = pixels.size(1), W = pixels.size(2);
  XLTUNE_CHECK(columns >= 1 && n % columns == 0, "image grid: ", n, " images do not fill rows of ", columns);
  const int64_t rows = n / columns;
  return pixels.view({rows, columns, H, W, 3}).permute({0, 2, 1, 3, 4}).reshape({rows * H, columns * W, 3}).contiguous();
}

}  // namespace xltune
