// Text to image, image to image and inpainting with SDXL, as diffusers' StableDiffusionXL
// {,Img2Img,Inpaint}Pipeline compute them for a 4-channel UNet (the reference's predict.py uses
// the three with one set of modules).
//
// Note [Generation as diffusers draws it]
// One CPU generator seeded with the seed makes every random number, in diffusers' order, so a
// seed gives the images diffusers gives (and a seed that is repeated gives the same PNGs):
//   txt2img:  latents = randn([n, 4, H/f, W/f]) * init_noise_sigma; ancestral noise per step;
//   img2img:  the VAE's latent sample of the image (randn [1, 4, h, w]), then the noise
//             randn([n, 4, h, w]) added at the first kept timestep;
//   inpaint:  the image's latent sample, the noise, then the masked image's latent sample
//             (diffusers encodes it even for a 4-channel UNet, which never reads it: only the
//             draw is made here), then per step the known region is re-noised with that noise.
// The draws are fp32 on the CPU and then moved (diffusers draws in the latents' dtype: on a
// GPU in bf16 the two differ; on the CPU in fp32 they are equal).
// Classifier-free guidance runs the negative and positive halves in one UNet call. With no
// negative prompt the negative conditioning is zeros when the model's model_index.json says
// force_zeros_for_empty_prompt; a given negative prompt, even "", is encoded. Size conditioning
// is (H, W, 0, 0, H, W). The VAE decodes latents / scaling_factor in fp32 when its config says
// force_upcast; pixels are round(clamp(x / 2 + 0.5, 0, 1) * 255).
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <string>

#include "sdxl/sdxl_model.h"
#include "text/clip_tokenizer.h"

namespace xltune {

struct GenerationRequest {
  std::string prompt;
  std::string negative_prompt;
  bool has_negative_prompt = false;
  int64_t width = 1024, height = 1024;  // txt2img and inpaint; img2img takes the image's size
  int64_t num_outputs = 1;
  int64_t num_inference_steps = 50;
  double guidance_scale = 7.5;
  std::string scheduler = "K_EULER";
  uint64_t seed = 0;
  // img2img (image alone) and inpainting (image and mask): image [1, 3, H, W] in [-1, 1];
  // mask [1, 1, H, W] with 1 where the image is repainted.
  at::Tensor image, mask;
  double strength = 0.8;
  // Only these outputs of the n (a rank's share); empty: all. The draws are still those of
  // all n, so that a share's images equal the same images of a run that made all of them.
  std::vector<int64_t> only;
};

struct GenerationResult {
  at::Tensor latents;  // [k, 4, h, w] fp32 before decoding (the outputs asked for)
  at::Tensor pixels;   // [k, H, W, 3] uint8
};

class SdxlPipeline {
 public:
  // `model` with its UNet, VAE and both encoders loaded (LoRA and new tokens already attached);
  // the tokenizers with the new tokens added.
  SdxlPipeline(SdxlModel& model, ClipTokenizer tokenizer_1, ClipTokenizer tokenizer_2, bool force_zeros_for_empty_prompt);

  GenerationResult generate(const GenerationRequest& request, const std::function<void(int64_t, int64_t)>& progress = {});

  // The VAE's pixel factor (8 for SDXL): sizes must be multiples of it.
  int64_t vae_scale_factor() const;
  // Channels of the latents (the UNet's input: 4 for SDXL).
  int64_t latent_channels() const { return model_.unet_config.in_channels; }
  // diffusers' get_timesteps: the first step img2img and inpainting run, times the order.
  static int64_t first_step(int64_t steps, double strength);

 private:
  std::pair<at::Tensor, at::Tensor> encode(const std::string& text);
  at::Tensor decode(const at::Tensor& latents);

  SdxlModel& model_;
  ClipTokenizer tokenizer_1_, tokenizer_2_;
  bool force_zeros_;
};

}  // namespace xltune
