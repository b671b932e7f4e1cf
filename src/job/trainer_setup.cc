#include "job/trainer_setup.h"

#include <ATen/Context.h>
#include <ATen/Parallel.h>

#include "core/check.h"
#include "core/log.h"
#include "dist/bucketed_reducer.h"
#ifdef XLTUNE_HAVE_NCCL
#include "dist/nccl_communicator.h"
#endif
#include "job/job_devices.h"

namespace xltune {

at::Device set_up_device(const TrainOptions& o, int local_rank) {
  if (o.threads > 0) at::set_num_threads(o.threads);
  const at::Device device = resolve_device(o.device, local_rank);
  if (device.is_cuda()) {
    at::globalContext().setAllowTF32CuBLAS(true);
    at::globalContext().setAllowTF32CuDNN(true);
  }
  return device;
}

at::ScalarType frozen_dtype(at::Device device) { return device.is_cuda() ? at::kBFloat16 : at::kFloat; }

TrainerConfig trainer_config_from(const TrainOptions& o, int64_t total_steps, int64_t pivot_step, uint64_t seed,
                                  at::Device device) {
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
  tc.gradient_checkpointing = o.gradient_checkpointing;
  tc.optimizer_state_dtype = o.optimizer_state_dtype;
  tc.autocast_bf16 = !o.is_lora && device.is_cuda();
  return tc;
}

SdxlLoadOptions sdxl_load_options(const TrainOptions& o, at::Device device, bool with_vae) {
  SdxlLoadOptions load;
  const at::ScalarType frozen = frozen_dtype(device);
  load.unet = at::TensorOptions().dtype(o.is_lora ? frozen : at::kFloat).device(device);
  load.text_encoders = at::TensorOptions().dtype(frozen).device(device);
  load.vae = at::TensorOptions().dtype(at::kFloat).device(device);
  load.variant = o.variant;
  load.config_dir = o.model_config;
  load.with_vae = with_vae;
  return load;
}

GradientPath make_gradient_path(Communicator& comm, at::Device device, bool shard_optimizer_state) {
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
  path.reducer = std::make_shared<BucketedReducer>(*grads);
  if (shard_optimizer_state) path.optimizer_shards = grads;
  return path;
}

}  // namespace xltune
