// The synthetic inputs of the training benches (bench/train_bench.cc, bench/step_ops.cc): SDXL
// base's real architecture, one batch on the device with one caption holding the two new
// tokens, and a trainer configuration whose pivot falls after `steps` steps, so that a bench
// runs `steps` steps on each side of it.
#pragma once

#include <ATen/ATen.h>

#include <vector>

#include "core/placement.h"
#include "models/sdxl_base_configs.h"
#include "sdxl/sdxl_model.h"
#include "train/trainer.h"

namespace xltune::bench {

// SDXL base 1.0's UNet and text encoders with their real shapes; the weights are left as the
// modules' constructors make them (each bench fills them its own way).
inline SdxlModel sdxl_base_shapes(const at::TensorOptions& unet_o, const at::TensorOptions& te_o) {
  SdxlModel m;
  m.path = "sdxl-base (random weights)";
  m.unet_config = UNetConfig::from_json_text(kSdxlBaseUNetConfig, "SDXL base UNet config");
  m.scheduler = NoiseScheduleConfig::from_json_text(kSdxlBaseSchedulerConfig, "SDXL base scheduler config");
  m.unet = UNet(m.unet_config, unet_o);
  ClipTextConfig c1;  // CLIP ViT-L/14
  ClipTextConfig c2;  // OpenCLIP ViT-bigG/14
  c2.hidden_size = 1280, c2.intermediate_size = 5120, c2.num_hidden_layers = 32, c2.num_attention_heads = 20;
  c2.hidden_act = "gelu", c2.with_projection = true, c2.projection_dim = 1280;
  m.te1 = ClipTextModel(c1, te_o);
  m.te2 = ClipTextModel(c2, te_o);
  return m;
}

inline StepBatch synthetic_batch(int64_t b, int64_t latent, const at::Device& device) {
  at::manual_seed(1);
  StepBatch s;
  const auto f32 = at::TensorOptions().dtype(at::kFloat).device(device);
  s.latent_mean = at::randn({b, 4, latent, latent}, f32);
  s.latent_logvar = at::full({b, 4, latent, latent}, -4.0, f32);
  std::vector<int64_t> ids{49406, 320, 1125, 539, 49408, 49409, 525, 320, 2368, 49407};
  ids.resize(77, 49407);
  s.input_ids_1 = at::tensor(ids, at::kLong).repeat({b, 1}).to(device);
  std::vector<int64_t> ids2(ids.begin(), ids.begin() + 10);
  ids2.resize(77, 0);
  s.input_ids_2 = at::tensor(ids2, at::kLong).repeat({b, 1}).to(device);
  s.add_time_ids = at::tensor({1024.f, 1024.f, 0.f, 0.f, 1024.f, 1024.f}).repeat({b, 1}).to(device);
  s.mask = at::ones({b, 1, latent, latent}, f32);
  // One caption for the batch, as the default captions (the prefix alone) give.
  for (int64_t i = 0; i < b; ++i) s.positions.push_back(i), s.caption_keys.push_back(0);
  return s;
}

// LoRA rank 32 (or full fine-tuning), constant learning rate, 2 * (steps + 1) steps with the
// pivot after step steps + 1.
inline TrainerConfig synthetic_config(bool lora, int64_t steps, bool checkpointing, const Placement& placement) {
  TrainerConfig c;
  c.is_lora = lora;
  c.lora_rank = 32, c.lora_alpha = 32;
  c.max_train_steps = 2 * (steps + 1);
  c.pivot_step = steps + 1;
  c.schedule = LrSchedule{LrScheduleKind::kConstant, 0, c.max_train_steps};
  c.gradient_checkpointing = checkpointing;
  c.autocast_bf16 = placement.autocast_bf16;
  // As `xltune train --adamw_kernel auto`: fused on a GPU, foreach (torch's single-tensor bits) on the CPU.
  c.adamw_kernel = placement.device.is_cuda() ? AdamWKernel::kFused : AdamWKernel::kForeach;
  // As --lora_fused_projections auto (Note [LoRA's shared down-projection]).
  c.lora_fused_projections = lora && placement.device.is_cuda();
  // As --lora_product_dtype auto (Note [LoRA's product in bf16]).
  c.lora_product_dtype = placement.device.is_cuda() && placement.unet == at::kBFloat16 ? at::kBFloat16 : at::kFloat;
  return c;
}

}  // namespace xltune::bench
