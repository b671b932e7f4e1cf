#include "job/trainer_setup.h"

#include "core/check.h"
#include "core/log.h"
#include "dist/bucketed_reducer.h"
#ifdef XLTUNE_HAVE_NCCL
#include "dist/nccl_communicator.h"
#endif

namespace xltune {

Placement training_placement(const TrainOptions& o, int local_rank) {
  Placement p = decide_placement(o.device, local_rank, o.is_lora ? PlacementUse::kTrainLora : PlacementUse::kTrainFull,
                                 o.threads, o.deterministic);
  p.attention = o.attention;
  // Before anything loads: a CUDA graph needs a CUDA device (Note [The step as a CUDA graph]).
  XLTUNE_CHECK(o.cuda_graph != CudaGraphChoice::kOn || p.device.is_cuda(), "--cuda_graph true needs a CUDA device; this run trains on ",
               p.device.str());
  apply_placement(p);
  return p;
}

TrainerConfig trainer_config_from(const TrainOptions& o, int64_t total_steps, int64_t pivot_step, uint64_t seed,
                                  const Placement& placement) {
  TrainerConfig tc;
  tc.is_lora = o.is_lora;
  tc.lora_rank = o.lora_rank;
  tc.lora_alpha = o.lora_alpha.value_or(static_cast<double>(o.lora_rank));
  tc.unet_learning_rate = o.unet_learning_rate;
  tc.ti_lr = o.ti_lr;
  tc.lora_lr = o.lora_lr;
  tc.schedule = LrSchedule{o.lr_scheduler, o.lr_warmup_steps, total_steps};
  tc.max_train_steps = total_steps;
  tc.pivot_step = pivot_step;
  tc.seed = seed;
  tc.snr_gamma = o.snr_gamma;
  tc.noise_offset = o.noise_offset;
  tc.max_grad_norm = o.max_grad_norm;
  tc.grad_spike_factor = o.grad_spike_factor;
  tc.gradient_checkpointing = o.gradient_checkpointing;
  tc.optimizer_state_dtype = o.optimizer_state_dtype;
  // auto: the fused kernel where it is one pass over the values in place of ~9 launches a group (a
  // GPU); on the CPU the foreach path, whose single-tensor kernels are torch's single-tensor AdamW
  // bit for bit (the replay against diffusers is exact).
  switch (o.adamw_kernel) {
    case AdamWKernelChoice::kForeach: tc.adamw_kernel = AdamWKernel::kForeach; break;
    case AdamWKernelChoice::kFused: tc.adamw_kernel = AdamWKernel::kFused; break;
    case AdamWKernelChoice::kAuto:
      tc.adamw_kernel = placement.device.is_cuda() ? AdamWKernel::kFused : AdamWKernel::kForeach;
      break;
  }
  tc.lora_fused_projections = o.lora_fused_projections == LoraFusedChoice::kOn ||
                              (o.lora_fused_projections == LoraFusedChoice::kAuto && placement.device.is_cuda());
  switch (o.lora_product_dtype) {
    case LoraProductChoice::kFp32: tc.lora_product_dtype = at::kFloat; break;
    case LoraProductChoice::kBf16: tc.lora_product_dtype = at::kBFloat16; break;
    case LoraProductChoice::kAuto:  // bf16 where the input already is (a GPU's bf16 UNet), else fp32
      tc.lora_product_dtype = placement.device.is_cuda() && placement.unet == at::kBFloat16 ? at::kBFloat16 : at::kFloat;
      break;
  }
  switch (o.cuda_graph) {
    case CudaGraphChoice::kOff: tc.step_graph = TrainerConfig::StepGraph::kOff; break;
    case CudaGraphChoice::kOn: tc.step_graph = TrainerConfig::StepGraph::kCuda; break;
    case CudaGraphChoice::kStatic: tc.step_graph = TrainerConfig::StepGraph::kStatic; break;
  }
  tc.autocast_bf16 = placement.autocast_bf16;
  tc.use_ema = o.use_ema;
  tc.ema_decay = o.ema_decay;
  return tc;
}

SdxlLoadOptions sdxl_load_options(const TrainOptions& o, const Placement& placement, bool with_vae) {
  SdxlLoadOptions load;
  load.unet = placement.unet_options();
  load.text_encoders = placement.frozen_options();
  load.vae = placement.vae_options();
  load.variant = o.variant;
  load.config_dir = o.model_config;
  load.with_vae = with_vae;
  return load;
}

at::ScalarType grad_reduce_dtype_for(const TrainOptions& o, const Communicator& grads) {
  if (o.grad_reduce_dtype != at::ScalarType::Undefined) return o.grad_reduce_dtype;
  return !o.is_lora && grads.sums_bf16() ? at::kBFloat16 : at::kFloat;
}

GradientPath make_gradient_path(Communicator& comm, at::Device device, const TrainOptions& o) {
  GradientPath path;
  if (comm.size() == 1) {
    path.reducer = std::make_shared<AfterBackwardReducer>(comm);
    return path;
  }
  Communicator* grads = &comm;
  if (device.is_cuda()) {
#ifdef XLTUNE_HAVE_NCCL
    path.device_comm = std::make_unique<NcclCommunicator>(comm, device);
    grads = path.device_comm.get();
#else
    XLTUNE_FAIL("training on ", comm.size(), " GPUs needs NCCL, and this xltune was built without it (configure with ",
                "-DXLTUNE_WITH_NCCL=on against a CUDA libtorch)");
#endif
  }
  path.reduce_dtype = grad_reduce_dtype_for(o, *grads);
  BucketedReducer::Options buckets;
  buckets.reduce_dtype = path.reduce_dtype;
  path.reducer = std::make_shared<BucketedReducer>(*grads, buckets);
  if (!o.is_lora && o.zero != ZeroMode::kOff) {
    const double replicated = o.zero_replicated_fraction.value_or(TrainOptions::kDefaultZeroReplicatedFraction);
    path.optimizer_shards = OptimizerShards{grads, path.reduce_dtype, o.zero_gather_dtype, replicated};
    path.gather_dtype = o.zero_gather_dtype;
  }
  return path;
}

}  // namespace xltune
