// The one mapping from `xltune train`'s options to the trainer: each option lands in its field.
#include "job/trainer_setup.h"

#include <gtest/gtest.h>

#include "core/error.h"
#include "dist/thread_group.h"
#include "job/run_config.h"
#include "job/run_identity.h"
#include "test_util.h"

namespace xltune {
namespace {

TEST(TrainerSetup, EveryTrainingOptionReachesTheTrainerConfig) {
  TrainOptions o;
  o.is_lora = true;
  o.lora_rank = 8;
  o.unet_learning_rate = 2e-6;
  o.ti_lr = 3e-3;
  o.lora_lr = 5e-4;
  o.lr_scheduler = LrScheduleKind::kCosine;
  o.lr_warmup_steps = 7;
  o.snr_gamma = 5;
  o.noise_offset = 0.05;
  o.max_grad_norm = 0.5;
  o.gradient_checkpointing = true;
  o.optimizer_state_dtype = at::kBFloat16;
  o.use_ema = true;
  o.ema_decay = 0.995;
  const TrainerConfig tc = trainer_config_from(o, 120, 60, 99, Placement{});
  EXPECT_TRUE(tc.is_lora);
  EXPECT_EQ(tc.lora_rank, 8);
  EXPECT_EQ(tc.lora_alpha, 8.0);  // unset: = rank
  EXPECT_EQ(tc.unet_learning_rate, 2e-6);
  EXPECT_EQ(tc.ti_lr, 3e-3);
  EXPECT_EQ(tc.lora_lr, 5e-4);
  EXPECT_EQ(tc.schedule.kind, LrScheduleKind::kCosine);
  EXPECT_EQ(tc.schedule.warmup_steps, 7);
  EXPECT_EQ(tc.schedule.total_steps, 120);
  EXPECT_EQ(tc.max_train_steps, 120);
  EXPECT_EQ(tc.pivot_step, 60);
  EXPECT_EQ(tc.seed, 99u);
  EXPECT_EQ(tc.snr_gamma, 5);
  EXPECT_EQ(tc.noise_offset, 0.05);
  EXPECT_EQ(tc.max_grad_norm, 0.5);
  EXPECT_TRUE(tc.gradient_checkpointing);
  EXPECT_EQ(tc.optimizer_state_dtype, at::kBFloat16);
  EXPECT_FALSE(tc.autocast_bf16);  // LoRA; and never on the CPU
  EXPECT_TRUE(tc.use_ema);
  EXPECT_EQ(tc.ema_decay, 0.995);
  o.lora_alpha = 4;
  EXPECT_EQ(trainer_config_from(o, 120, 60, 99, Placement{}).lora_alpha, 4.0);
}

// --adamw_kernel auto: foreach on the CPU (torch's single-tensor AdamW bit for bit), fused on a GPU;
// a given kernel is taken as given.
TEST(TrainerSetup, AdamWKernelAutoIsForeachOnTheCpuAndFusedOnAGpu) {
  TrainOptions o;
  EXPECT_EQ(o.adamw_kernel, AdamWKernelChoice::kAuto);
  const Placement cpu = placement_for(at::kCPU, PlacementUse::kTrainLora);
  const Placement gpu = placement_for(at::Device(at::kCUDA, 0), PlacementUse::kTrainLora);
  EXPECT_EQ(trainer_config_from(o, 10, 5, 1, Placement{}).adamw_kernel, AdamWKernel::kForeach);
  EXPECT_EQ(trainer_config_from(o, 10, 5, 1, cpu).adamw_kernel, AdamWKernel::kForeach);
  EXPECT_EQ(trainer_config_from(o, 10, 5, 1, gpu).adamw_kernel, AdamWKernel::kFused);
  o.adamw_kernel = AdamWKernelChoice::kFused;
  EXPECT_EQ(trainer_config_from(o, 10, 5, 1, cpu).adamw_kernel, AdamWKernel::kFused);
  o.adamw_kernel = AdamWKernelChoice::kForeach;
  EXPECT_EQ(trainer_config_from(o, 10, 5, 1, gpu).adamw_kernel, AdamWKernel::kForeach);
  EXPECT_STREQ(adamw_kernel_name(AdamWKernel::kFused), "fused");
  EXPECT_STREQ(adamw_kernel_name(AdamWKernel::kForeach), "foreach");
}

// --lora_fused_projections auto: off on the CPU (the replay against diffusers + peft is exact), on on
// a GPU (Note [LoRA's shared down-projection]); on and off as given.
TEST(TrainerSetup, LoraFusedProjectionsAutoIsOffOnTheCpuAndOnOnAGpu) {
  TrainOptions o;
  EXPECT_EQ(o.lora_fused_projections, LoraFusedChoice::kAuto);
  const Placement cpu = placement_for(at::kCPU, PlacementUse::kTrainLora);
  const Placement gpu = placement_for(at::Device(at::kCUDA, 0), PlacementUse::kTrainLora);
  EXPECT_FALSE(trainer_config_from(o, 10, 5, 1, cpu).lora_fused_projections);
  EXPECT_TRUE(trainer_config_from(o, 10, 5, 1, gpu).lora_fused_projections);
  o.lora_fused_projections = LoraFusedChoice::kOn;
  EXPECT_TRUE(trainer_config_from(o, 10, 5, 1, cpu).lora_fused_projections);
  o.lora_fused_projections = LoraFusedChoice::kOff;
  EXPECT_FALSE(trainer_config_from(o, 10, 5, 1, gpu).lora_fused_projections);
}

TEST(TrainerSetup, TheRunMeaningIsTheTrainerConfigs) {
  TrainOptions o;
  o.lora_lr = 5e-4;
  o.lr_scheduler = LrScheduleKind::kLinear;
  o.optimizer_state_dtype = at::kBFloat16;
  const TrainerConfig tc = trainer_config_from(o, 100, 50, 7, Placement{});
  const nlohmann::json m = run_meaning(tc, RunData{"sdxl", 512, "TOK", 8, "shards-id", "content:1"});
  EXPECT_EQ(m.at("lora_lr"), 5e-4);
  EXPECT_EQ(m.at("lora_alpha"), 32.0);
  EXPECT_EQ(m.at("lr_scheduler"), "linear");
  EXPECT_EQ(m.at("optimizer_state_dtype"), "bf16");
  EXPECT_EQ(m.at("pivot_step"), 50);
  EXPECT_EQ(m.at("seed"), 7u);
  EXPECT_EQ(m.at("global_batch"), 8);
  EXPECT_EQ(m.at("input_images"), "content:1");
  EXPECT_EQ(m.at("ema"), false) << "no EMA: its decay means nothing and is left out";
  o.use_ema = true;
  o.ema_decay = 0.995;
  EXPECT_EQ(run_meaning(trainer_config_from(o, 100, 50, 7, Placement{}), RunData{}).at("ema"), 0.995);
}

// Note [Validation loss]: images held out of training change which images train, so a resume must
// hold out as many; the field is there only when some are, and a checkpoint without it (a run that
// held none out) refuses a run that would, as the other way round.
TEST(TrainerSetup, HeldOutImagesAreInTheRunMeaningOnlyWhenThereAreSome) {
  const TrainerConfig tc = trainer_config_from(TrainOptions{}, 100, 50, 7, Placement{});
  RunData data{"sdxl", 512, "TOK", 8, "shards-id", "content:1"};
  const nlohmann::json none = run_meaning(tc, data);
  EXPECT_FALSE(none.contains("held_out"));
  data.held_out = 4;
  const nlohmann::json held = run_meaning(tc, data);
  EXPECT_EQ(held.at("held_out"), 4);
  EXPECT_NO_THROW(check_meaning(held, held, "ckpt"));
  EXPECT_NO_THROW(check_meaning(none, none, "ckpt"));
  data.held_out = 2;
  const nlohmann::json fewer = run_meaning(tc, data);
  for (const auto& [theirs, ours] : {std::make_pair(held, none), std::make_pair(none, held), std::make_pair(held, fewer)}) {
    std::string message;
    try {
      check_meaning(theirs, ours, "ckpt");
    } catch (const std::exception& e) {
      message = e.what();
    }
    EXPECT_NE(message.find("--validation_loss_steps/--validation_loss_images"), std::string::npos) << message;
  }
}

TEST(TrainerSetup, StepsComeFromMaxTrainStepsUnlessOnlyEpochsAreGiven) {
  TrainOptions o;
  EXPECT_EQ(resolve_total_steps(o, 7), TrainOptions::kDefaultMaxTrainSteps);  // neither: the seed's 1000
  o.num_train_epochs = 3;
  EXPECT_EQ(resolve_total_steps(o, 7), 21);  // epochs alone: exactly 3 x 7
  o.max_train_steps = 50;
  EXPECT_EQ(resolve_total_steps(o, 7), 50);  // both: the steps win
  o.num_train_epochs.reset();
  EXPECT_EQ(resolve_total_steps(o, 7), 50);
}

TEST(TrainerSetup, OnTheCpuEverythingLoadsInFp32) {
  TrainOptions o;
  o.variant = "fp16";
  const SdxlLoadOptions load = sdxl_load_options(o, placement_for(at::kCPU, PlacementUse::kTrainLora), /*with_vae=*/false);
  EXPECT_EQ(load.unet.dtype(), at::kFloat);
  EXPECT_EQ(load.text_encoders.dtype(), at::kFloat);
  EXPECT_EQ(load.vae.dtype(), at::kFloat);
  EXPECT_FALSE(load.with_vae);
  EXPECT_EQ(load.variant, "fp16");
}

// Note [One placement] on a GPU, decided without one: frozen weights bf16, the whole UNet fp32
// under bf16 autocast when it trains, the VAE fp32 in training.
TEST(TrainerSetup, OnAGpuFrozenWeightsAreBf16AndAWholeUNetTrainsInFp32) {
  TrainOptions o;
  const at::Device gpu(at::kCUDA, 0);
  const SdxlLoadOptions lora = sdxl_load_options(o, placement_for(gpu, PlacementUse::kTrainLora), true);
  EXPECT_EQ(lora.unet.dtype(), at::kBFloat16);
  EXPECT_EQ(lora.text_encoders.dtype(), at::kBFloat16);
  EXPECT_EQ(lora.vae.dtype(), at::kFloat);
  EXPECT_EQ(lora.unet.device(), gpu);
  o.is_lora = false;
  const Placement full = placement_for(gpu, PlacementUse::kTrainFull);
  EXPECT_EQ(sdxl_load_options(o, full, true).unet.dtype(), at::kFloat);
  EXPECT_TRUE(trainer_config_from(o, 10, 5, 1, full).autocast_bf16);
  EXPECT_FALSE(trainer_config_from(o, 10, 5, 1, placement_for(at::kCPU, PlacementUse::kTrainFull)).autocast_bf16);
  const Placement gen = placement_for(gpu, PlacementUse::kGenerate);
  EXPECT_EQ(gen.vae, at::kBFloat16) << "generation decodes in bf16 unless the VAE's config forces fp32";
  EXPECT_EQ(placement_for(gpu, PlacementUse::kPreprocess).frozen, at::kBFloat16);
  EXPECT_EQ(placement_for(at::kCPU, PlacementUse::kPreprocess).frozen, at::kFloat);
}

TEST(TrainerSetup, OneRankReducesNothingAndShardsNothing) {
  SingleProcessCommunicator comm;
  EXPECT_EQ(comm.device_type(), c10::DeviceType::CPU);  // NCCL's is CUDA: small tensors move there
  TrainOptions o;
  o.is_lora = false;  // full fine-tuning, --zero auto: sharded on 2+ ranks, not on one
  o.grad_reduce_dtype = at::kBFloat16;
  const GradientPath path = make_gradient_path(comm, at::kCPU, o);
  EXPECT_NE(path.reducer, nullptr);
  EXPECT_EQ(path.device_comm, nullptr);
  EXPECT_EQ(path.optimizer_shards.comm, nullptr);
  EXPECT_EQ(traveling_dtype_name(path.reduce_dtype), "none");
  EXPECT_EQ(traveling_dtype_name(path.gather_dtype), "none");
}

// Note [bf16 gradient reduction]: auto is bf16 only for full fine-tuning on a communicator that
// sums bf16 itself (NCCL; here a thread group that does); --grad_reduce_dtype wins everywhere.
TEST(TrainerSetup, GradientsTravelInBf16ByDefaultOnlyForFullFineTuningOnNccl) {
  const auto as_mpi = make_thread_group(2);              // sums no bf16, as MPI
  const auto as_nccl = make_thread_group(2, /*sums_bf16=*/true);
  TrainOptions o;
  EXPECT_EQ(o.grad_reduce_dtype, at::ScalarType::Undefined) << "unset: auto";
  o.is_lora = true;
  EXPECT_EQ(grad_reduce_dtype_for(o, *as_mpi[0]), at::kFloat);
  EXPECT_EQ(grad_reduce_dtype_for(o, *as_nccl[0]), at::kFloat) << "LoRA: fp32 on NCCL too";
  o.is_lora = false;
  EXPECT_EQ(grad_reduce_dtype_for(o, *as_mpi[0]), at::kFloat) << "MPI would sum an fp32 copy: no gain";
  EXPECT_EQ(grad_reduce_dtype_for(o, *as_nccl[0]), at::kBFloat16);
  o.grad_reduce_dtype = at::kFloat;
  EXPECT_EQ(grad_reduce_dtype_for(o, *as_nccl[0]), at::kFloat);
  o.grad_reduce_dtype = at::kBFloat16;
  o.is_lora = true;
  EXPECT_EQ(grad_reduce_dtype_for(o, *as_mpi[0]), at::kBFloat16) << "asked for: on MPI and with LoRA too";

  // The gradient path carries them: the reducer's and ZeRO-1's.
  o.is_lora = false;
  o.zero_gather_dtype = at::kBFloat16;
  GradientPath path = make_gradient_path(*as_mpi[0], at::kCPU, o);
  EXPECT_EQ(path.reduce_dtype, at::kBFloat16);
  EXPECT_EQ(path.gather_dtype, at::kBFloat16);
  EXPECT_EQ(path.optimizer_shards.comm, as_mpi[0].get());
  EXPECT_EQ(path.optimizer_shards.reduce_dtype, at::kBFloat16);
  EXPECT_EQ(path.optimizer_shards.gather_dtype, at::kBFloat16);
  o.grad_reduce_dtype = at::ScalarType::Undefined;
  o.zero = ZeroMode::kOff;
  o.zero_gather_dtype = at::kFloat;
  path = make_gradient_path(*as_mpi[0], at::kCPU, o);
  EXPECT_EQ(traveling_dtype_name(path.reduce_dtype), "fp32");
  EXPECT_EQ(path.optimizer_shards.comm, nullptr);
  EXPECT_EQ(traveling_dtype_name(path.gather_dtype), "none");
}

TEST(TrainerSetup, ABf16AllGatherNeedsZeroOne) {
  TrainOptions o;
  o.model = "sdxl";
  o.input_images = "photos.zip";
  o.is_lora = false;
  o.zero_gather_dtype = at::kBFloat16;
  EXPECT_NO_THROW(validate_train_options(o));
  o.zero = ZeroMode::kOff;
  try {
    validate_train_options(o);
    FAIL() << "--zero off has no all-gather";
  } catch (const Error& e) {
    EXPECT_CONTAINS(e.what(), "--zero_gather_dtype bf16");
    EXPECT_CONTAINS(e.what(), "--zero off");
  }
  o.zero = ZeroMode::kAuto;
  o.is_lora = true;
  EXPECT_THROW(validate_train_options(o), Error);
}

}  // namespace
}  // namespace xltune
