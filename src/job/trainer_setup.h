// The one mapping from `xltune train`'s options to what the trainer is built from: the
// TrainerConfig, how the model is loaded, and how gradients travel between ranks. An option that
// changes training is mapped here and nowhere else; the run meaning (run_identity.h) that a
// resume must match is derived from the TrainerConfig this returns.
#pragma once

#include <c10/core/Device.h>

#include <memory>

#include "core/placement.h"
#include "dist/communicator.h"
#include "dist/gradient_reducer.h"
#include "job/train_options.h"
#include "sdxl/sdxl_model.h"
#include "train/trainer.h"

namespace xltune {

// Where this rank trains and in which precision (Note [One placement]: --device, the local
// rank's GPU for auto; LoRA or the whole UNet), with --threads, TF32, cuDNN's benchmark and
// --deterministic applied.
Placement training_placement(const TrainOptions& o, int local_rank);

// The trainer's configuration for a run of `total_steps` whose token rows train in steps
// 1..pivot_step (half the steps for a new run; a resumed run keeps its checkpoint's).
TrainerConfig trainer_config_from(const TrainOptions& o, int64_t total_steps, int64_t pivot_step, uint64_t seed,
                                  const Placement& placement);

// The placement's dtypes (the UNet fp32 when it trains whole, the VAE fp32: latents are encoded
// once, exactly); the VAE only when `with_vae`.
SdxlLoadOptions sdxl_load_options(const TrainOptions& o, const Placement& placement, bool with_vae);

// Note [bf16 gradient reduction]: --grad_reduce_dtype when given; auto: bf16 for full fine-tuning
// on a communicator that sums bf16 natively (NCCL), fp32 otherwise (LoRA's gradients are small,
// and MPI would sum an fp32 copy anyway).
at::ScalarType grad_reduce_dtype_for(const TrainOptions& o, const Communicator& grads);

// Gradients: NCCL between GPUs, MPI between CPU ranks, averaged by the bucketed reducer
// (Note [Gradient buckets]) in grad_reduce_dtype_for's dtype; one rank reduces nothing.
struct GradientPath {
  std::unique_ptr<Communicator> device_comm;  // NCCL, when the ranks train on GPUs
  std::shared_ptr<GradientReducer> reducer;
  // ZeRO-1's (the Trainer's optimizer_shards): full fine-tuning with --zero auto|on on 2+ ranks.
  OptimizerShards optimizer_shards;
  // What travels: kUndefined where nothing does (one rank; no ZeRO-1 for the gather).
  at::ScalarType reduce_dtype = at::ScalarType::Undefined, gather_dtype = at::ScalarType::Undefined;
};
GradientPath make_gradient_path(Communicator& comm, at::Device device, const TrainOptions& o);

}  // namespace xltune
