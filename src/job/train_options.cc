#include "job/train_options.h"

#include <cmath>

#include "core/check.h"
#include <algorithm>

#include "data/captions.h"
#include "diffusion/scheduler.h"
#include "train/lr_schedule.h"

namespace xltune {

PreprocessOptions preprocess_options_of(const TrainOptions& o) {
  PreprocessOptions prep = o.prep;
  if (o.resolution) prep.resolution = *o.resolution;
  return prep;
}

void validate_train_options(const TrainOptions& o) {
  XLTUNE_CHECK(!o.model.empty(), "--model: expected an SDXL diffusers folder or single-file checkpoint");
  XLTUNE_CHECK(o.input_images.empty() != o.shards.empty(), o.shards.empty() ? "--input_images: expected a .zip, .tar or "
               "folder of images (or --shards with an earlier `xltune preprocess` output)"
               : "--input_images and --shards: give one of them, not both");
  XLTUNE_CHECK(o.train_batch_size >= 1, "--train_batch_size: expected a positive number, got ", o.train_batch_size);
  XLTUNE_CHECK(o.max_train_steps.value_or(1) >= 1, "--max_train_steps: expected a positive number of steps, got ",
               o.max_train_steps.value_or(1));
  XLTUNE_CHECK(o.num_train_epochs.value_or(1) >= 1, "--num_train_epochs: expected a positive number of epochs, got ",
               o.num_train_epochs.value_or(1));
  XLTUNE_CHECK(o.unet_learning_rate > 0 && std::isfinite(o.unet_learning_rate), "--unet_learning_rate: expected a positive learning rate, got ",
               o.unet_learning_rate);
  XLTUNE_CHECK(o.ti_lr > 0 && std::isfinite(o.ti_lr), "--ti_lr: expected a positive learning rate, got ", o.ti_lr);
  XLTUNE_CHECK(o.lora_lr > 0 && std::isfinite(o.lora_lr), "--lora_lr: expected a positive learning rate, got ", o.lora_lr);
  XLTUNE_CHECK(o.lr_warmup_steps >= 0, "--lr_warmup_steps: expected 0 or more steps, got ", o.lr_warmup_steps);
  XLTUNE_CHECK(o.checkpointing_steps >= 1, "--checkpointing_steps: expected a positive number of steps, got ",
               o.checkpointing_steps, " (a number larger than --max_train_steps writes none)");
  XLTUNE_CHECK(o.lora_rank >= 1, "--lora_rank: expected a positive rank, got ", o.lora_rank);
  XLTUNE_CHECK(!o.lora_alpha || *o.lora_alpha > 0, "--lora_alpha: expected a positive number, got ",
               o.lora_alpha.value_or(0));
  XLTUNE_CHECK(o.snr_gamma >= 0, "--snr_gamma: expected 0 (off) or a positive gamma such as 5, got ", o.snr_gamma);
  XLTUNE_CHECK(o.gradient_accumulation_steps >= 1, "--gradient_accumulation_steps: expected a positive number, got ",
               o.gradient_accumulation_steps);
  XLTUNE_CHECK(o.grad_spike_factor == 0 || o.grad_spike_factor > 1, "--grad_spike_factor: expected 0 (off) or a ",
               "factor above 1 such as 10, got ", o.grad_spike_factor);
  XLTUNE_CHECK(o.max_skipped_steps >= 1, "--max_skipped_steps: expected a positive number, got ", o.max_skipped_steps);
  XLTUNE_CHECK(o.caption_dropout_rate >= 0 && o.caption_dropout_rate <= 1,
               "--caption_dropout_rate: expected a share between 0 and 1, got ", o.caption_dropout_rate);
  XLTUNE_CHECK(o.noise_offset >= 0, "--noise_offset: expected 0 (off) or a small positive number such as 0.05, got ",
               o.noise_offset);
  XLTUNE_CHECK(o.ema_decay >= 0 && o.ema_decay < 1, "--ema_decay: expected a value in [0, 1) such as 0.9999 ",
               "(diffusers' default), got ", o.ema_decay);
  XLTUNE_CHECK(o.max_grad_norm > 0, "--max_grad_norm: expected a positive norm, got ", o.max_grad_norm);
  XLTUNE_CHECK(o.variant.empty() || o.variant == "fp16", "--variant '", o.variant, "': expected fp16 or nothing");
  XLTUNE_CHECK(o.log_every >= 1, "--log_every: expected a positive number of steps, got ", o.log_every);
  XLTUNE_CHECK(o.replica_check_steps >= 0, "--replica_check_steps: expected 0 (off) or a number of steps, got ",
               o.replica_check_steps);
  XLTUNE_CHECK(o.collective_timeout >= 0, "--collective_timeout: expected seconds, or 0 for no limit, got ",
               o.collective_timeout);
  XLTUNE_CHECK(o.checkpoints_total_limit >= 0, "--checkpoints_total_limit: expected 0 (keep all) or more, got ",
               o.checkpoints_total_limit);
  XLTUNE_CHECK(o.zero != ZeroMode::kOn || !o.is_lora, "--zero on: ZeRO-1 shards full fine-tuning's optimizer state; with LoRA ",
               "(--is_lora true) the state is small and stays whole: leave --zero out");
  XLTUNE_CHECK(o.zero_gather_dtype != at::kBFloat16 || (!o.is_lora && o.zero != ZeroMode::kOff),
               "--zero_gather_dtype bf16: the all-gather of ZeRO-1, which shards full fine-tuning's optimizer state; ",
               o.is_lora ? "with LoRA (--is_lora true)" : "with --zero off", " there is none: leave it out");
  if (o.zero_replicated_fraction) {
    const double f = *o.zero_replicated_fraction;
    XLTUNE_CHECK(f >= 0 && f <= 1, "--zero_replicated_fraction: expected a fraction from 0 to 1, got ", f);
    XLTUNE_CHECK(!o.is_lora && o.zero != ZeroMode::kOff,
                 "--zero_replicated_fraction: a part of ZeRO-1, which shards full fine-tuning's optimizer state; ",
                 o.is_lora ? "with LoRA (--is_lora true)" : "with --zero off", " there is none: leave it out");
  }
  XLTUNE_CHECK(o.validation_steps >= 0, "--validation_steps: expected 0 (at the end only) or a number of steps, got ",
               o.validation_steps);
  XLTUNE_CHECK(o.num_validation_images >= 1 && o.num_validation_images <= 16,
               "--num_validation_images: expected 1 to 16 images per prompt, got ", o.num_validation_images);
  XLTUNE_CHECK(o.validation_inference_steps >= 1 && o.validation_inference_steps <= 500,
               "--validation_inference_steps: expected 1 to 500, got ", o.validation_inference_steps);
  XLTUNE_CHECK(o.validation_guidance_scale >= 1, "--validation_guidance_scale: expected 1 or more, got ",
               o.validation_guidance_scale);
  XLTUNE_CHECK(std::find(scheduler_names().begin(), scheduler_names().end(), o.validation_scheduler) !=
                   scheduler_names().end(),
               "--validation_scheduler '", o.validation_scheduler, "': expected one of the --scheduler names of xltune ",
               "generate (K_EULER, K_EULER_ANCESTRAL, DDIM, DPMSolverMultistep, KarrasDPM, HeunDiscrete, PNDM)");
  XLTUNE_CHECK(o.validation_loss_steps >= 0, "--validation_loss_steps: expected 0 (off) or a number of steps, got ",
               o.validation_loss_steps);
  XLTUNE_CHECK(o.validation_loss_images.value_or(1) >= 1 && o.validation_loss_images.value_or(1) <= 256,
               "--validation_loss_images: expected 1 to 256 images, got ", o.validation_loss_images.value_or(1));
  XLTUNE_CHECK(!o.validation_loss_images || o.validation_loss_steps > 0, "--validation_loss_images ",
               o.validation_loss_images.value_or(0), ": the validation loss is measured every --validation_loss_steps N ",
               "steps; give that too");
  XLTUNE_CHECK(!o.resume.empty(), "--resume: expected auto, none or a checkpoint folder");
  XLTUNE_CHECK(o.threads >= 0, "--threads: expected 0 (libtorch's default) or more, got ", o.threads);
  XLTUNE_CHECK(!o.output_dir.empty(), "--output_dir: expected a folder");
  XLTUNE_CHECK(o.device == "auto" || o.device == "cpu" || o.device.rfind("cuda", 0) == 0, "--device '", o.device,
               "': expected auto, cpu, cuda or cuda:N");
  // The seed: "caption_prefix ... Must contain the token_string".
  XLTUNE_CHECK(contains_token(o.prep.captions.caption_prefix, o.prep.captions.token_string), "--caption_prefix '",
               o.prep.captions.caption_prefix, "' must contain --token_string '", o.prep.captions.token_string,
               "' as a word (e.g. 'a photo of ", o.prep.captions.token_string, "'): otherwise no caption teaches the ",
               "new tokens");
  validate_preprocess_options(preprocess_options_of(o));
}

int64_t resolve_total_steps(const TrainOptions& o, int64_t steps_per_epoch) {
  if (o.max_train_steps || !o.num_train_epochs) return o.max_train_steps.value_or(TrainOptions::kDefaultMaxTrainSteps);
  return *o.num_train_epochs * steps_per_epoch;
}

}  // namespace xltune
