#include "generate/sdxl_pipeline.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include "core/check.h"
#include "diffusion/scheduler.h"

namespace xltune {

SdxlPipeline::SdxlPipeline(SdxlModel& model, ClipTokenizer tokenizer_1, ClipTokenizer tokenizer_2, bool force_zeros)
    : model_(model), tokenizer_1_(std::move(tokenizer_1)), tokenizer_2_(std::move(tokenizer_2)), force_zeros_(force_zeros) {}

int64_t SdxlPipeline::vae_scale_factor() const {
  return int64_t{1} << (model_.vae_config.block_out_channels.size() - 1);
}

int64_t SdxlPipeline::first_step(int64_t steps, double strength) {
  const int64_t init = std::min(static_cast<int64_t>(static_cast<double>(steps) * strength), steps);
  return std::max<int64_t>(steps - init, 0);
}

std::pair<at::Tensor, at::Tensor> SdxlPipeline::encode(const std::string& text) {
  const auto dev = model_.te1->token_embedding->weight.device();
  auto ids = [&](const ClipTokenizer& t) {
    return at::tensor(t.encode(text), at::TensorOptions().dtype(at::kLong)).view({1, -1}).to(dev);
  };
  ClipTextOutput a = model_.te1->forward(ids(tokenizer_1_));
  ClipTextOutput b = model_.te2->forward(ids(tokenizer_2_));
  // diffusers casts both to text_encoder_2's dtype.
  return {at::cat({a.penultimate, b.penultimate.to(a.penultimate.scalar_type())}, -1), b.text_embeds};
}

at::Tensor SdxlPipeline::decode(const at::Tensor& latents) {
  const auto vae_dtype = model_.vae->decoder->conv_in->weight.scalar_type();
  at::Tensor z = latents / model_.vae_config.scaling_factor;
  at::Tensor image = model_.vae->decode(z.to(vae_dtype)).to(at::kFloat);
  // VaeImageProcessor.postprocess + numpy_to_pil: (x / 2 + 0.5).clamp(0, 1), * 255, rounded.
  at::Tensor unit = (image / 2 + 0.5).clamp(0, 1);
  return (unit.permute({0, 2, 3, 1}).cpu() * 255).round().to(at::kByte).contiguous();
}

namespace {

// The size of the outputs (img2img: the image's), after checking the request against it and
// the VAE's factor `f`.
std::pair<int64_t, int64_t> checked_size(const GenerationRequest& r, int64_t f) {
  const bool img2img = r.image.defined() && !r.mask.defined();
  const bool inpaint = r.image.defined() && r.mask.defined();
  int64_t height = r.height, width = r.width;
  if (img2img) height = r.image.size(2), width = r.image.size(3);
  XLTUNE_CHECK(height % f == 0 && width % f == 0, "the size ", width, "x", height, " is not a multiple of ", f,
               " (the VAE's factor)");
  XLTUNE_CHECK(r.num_outputs >= 1, "--num_outputs: expected 1 or more, got ", r.num_outputs);
  XLTUNE_CHECK(!r.image.defined() || (r.strength >= 0 && r.strength <= 1), "--prompt_strength ", r.strength,
               ": expected a value from 0 to 1");
  if (inpaint) {
    XLTUNE_CHECK(r.image.size(2) == height && r.image.size(3) == width && r.mask.size(2) == height &&
                     r.mask.size(3) == width,
                 "inpainting: the image and the mask must be ", width, "x", height);
  }
  return {height, width};
}

}  // namespace

GenerationResult SdxlPipeline::generate(const GenerationRequest& r, const std::function<void(int64_t, int64_t)>& progress) {
  torch::NoGradGuard no_grad;
  const int64_t f = vae_scale_factor();
  const bool inpaint = r.image.defined() && r.mask.defined();
  const auto [height, width] = checked_size(r, f);
  const auto dev = model_.unet->conv_in->weight.device();
  const auto dtype = model_.unet->conv_in->weight.scalar_type();
  const auto f32 = at::TensorOptions().dtype(at::kFloat);
  const int64_t n = r.num_outputs;
  at::Tensor rows = at::arange(n, at::TensorOptions().dtype(at::kLong));
  if (!r.only.empty()) rows = at::tensor(r.only, at::TensorOptions().dtype(at::kLong));
  const int64_t k = rows.size(0);
  const bool cfg = r.guidance_scale > 1.0;

  // Conditioning: [negative; positive], each repeated for the outputs made here.
  auto [context, pooled] = encode(r.prompt);
  at::Tensor neg_context, neg_pooled;
  if (cfg) {
    if (!r.has_negative_prompt && force_zeros_) {
      neg_context = at::zeros_like(context), neg_pooled = at::zeros_like(pooled);
    } else {
      std::tie(neg_context, neg_pooled) = encode(r.has_negative_prompt ? r.negative_prompt : "");
    }
  }
  const at::Tensor time_ids =
      at::tensor(std::vector<float>{static_cast<float>(height), static_cast<float>(width), 0, 0,
                                    static_cast<float>(height), static_cast<float>(width)})
          .view({1, 6})
          .to(dev);
  auto repeat = [&](const at::Tensor& t) { return t.repeat_interleave(k, 0); };
  at::Tensor ctx = cfg ? at::cat({repeat(neg_context), repeat(context)}) : repeat(context);
  at::Tensor emb = cfg ? at::cat({repeat(neg_pooled), repeat(pooled)}) : repeat(pooled);
  at::Tensor ids = time_ids.repeat({cfg ? 2 * k : k, 1});
  ctx = ctx.to(dtype), emb = emb.to(dtype), ids = ids.to(dtype);

  auto scheduler = make_scheduler(r.scheduler, SchedulerConfig::from_json_text(model_.scheduler_json, model_.scheduler_source),
                                  r.num_inference_steps);
  if (!r.only.empty()) scheduler->keep_rows_of(n, rows);
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(r.seed);
  const std::vector<int64_t> shape = {n, latent_channels(), height / f, width / f};
  const int64_t total = scheduler->timesteps().size(0);
  int64_t begin = 0;
  if (r.image.defined()) {
    begin = first_step(scheduler->num_inference_steps(), r.strength) * scheduler->order();
    XLTUNE_CHECK(begin < total, "--prompt_strength ", r.strength, " with ", r.num_inference_steps,
                 " steps leaves no step to run");
  }
  at::Tensor latents, image_latents, noise, latent_mask;
  auto encode_image = [&](const at::Tensor& pixels) {
    // _encode_vae_image: the latent distribution's sample (one draw), times scaling_factor.
    const auto vae_dtype = model_.vae->encoder->conv_in->weight.scalar_type();
    LatentDistribution d = model_.vae->encode(pixels.to(dev).to(vae_dtype));
    at::Tensor eps = at::randn(d.mean.sizes(), gen, f32).to(dev).to(d.mean.scalar_type());
    return (d.sample(eps) * model_.vae_config.scaling_factor).to(at::kFloat);
  };
  if (!r.image.defined()) {
    latents = at::randn(shape, gen, f32).index_select(0, rows).to(dev) * scheduler->init_noise_sigma().to(dev);
  } else {
    image_latents = encode_image(r.image);
    image_latents = image_latents.repeat({k, 1, 1, 1});
    noise = at::randn(shape, gen, f32).index_select(0, rows).to(dev);
    if (inpaint && r.strength == 1.0) latents = noise * scheduler->init_noise_sigma().to(dev);
    else latents = scheduler->add_noise(image_latents, noise, begin);
    if (inpaint) {
      // The masked image's latent sample: drawn, never read by a 4-channel UNet.
      (void)at::randn({1, model_.vae_config.latent_channels, height / f, width / f}, gen, f32);
      latent_mask = at::upsample_nearest2d(r.mask.to(at::kFloat), {height / f, width / f}).to(dev);
    }
  }

  for (int64_t i = begin; i < total; ++i) {
    at::Tensor t = scheduler->timesteps()[i];
    at::Tensor x = cfg ? at::cat({latents, latents}) : latents;
    x = scheduler->scale_model_input(x, i);
    at::Tensor pred = model_.unet->forward(x.to(dtype), t.to(dev), ctx, emb, ids).to(at::kFloat);
    if (cfg) {
      auto halves = pred.chunk(2);
      pred = halves[0] + r.guidance_scale * (halves[1] - halves[0]);
    }
    latents = scheduler->step(pred, i, latents, gen);
    if (inpaint) {
      at::Tensor known = image_latents;
      if (i < total - 1) known = scheduler->add_noise(image_latents, noise, i + 1);
      latents = (1 - latent_mask) * known + latent_mask * latents;
    }
    if (progress) progress(i - begin + 1, total - begin);
  }
  GenerationResult out;
  out.latents = latents.cpu();
  out.pixels = decode(latents);
  return out;
}

}  // namespace xltune
