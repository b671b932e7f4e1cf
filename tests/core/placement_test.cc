// Note [One placement]: the device --device names, and one precision policy for every command.
#include "core/placement.h"

#include <gtest/gtest.h>
#include <torch/cuda.h>

#include <string>

#include "core/error.h"

namespace xltune {
namespace {

TEST(Placement, TheCpuRunsEverythingInFp32) {
  for (PlacementUse use : {PlacementUse::kTrainLora, PlacementUse::kTrainFull, PlacementUse::kGenerate,
                           PlacementUse::kPreprocess}) {
    const Placement p = decide_placement("cpu", 3, use, 2);
    EXPECT_TRUE(p.device.is_cpu());
    EXPECT_EQ(p.frozen, at::kFloat);
    EXPECT_EQ(p.unet, at::kFloat);
    EXPECT_EQ(p.vae, at::kFloat);
    EXPECT_FALSE(p.autocast_bf16);
    EXPECT_FALSE(p.tf32);
    EXPECT_EQ(p.threads, 2);
  }
  EXPECT_EQ(decide_placement("cpu", 0, PlacementUse::kTrainLora).describe(), "cpu, frozen fp32, UNet fp32, VAE fp32");
}

TEST(Placement, OnAGpuFrozenWeightsAreBf16) {
  const at::Device gpu(at::kCUDA, 1);
  const Placement lora = placement_for(gpu, PlacementUse::kTrainLora);
  EXPECT_EQ(lora.frozen, at::kBFloat16);
  EXPECT_EQ(lora.unet, at::kBFloat16);
  EXPECT_EQ(lora.vae, at::kFloat) << "latents are encoded once, exactly";
  EXPECT_FALSE(lora.autocast_bf16);
  EXPECT_TRUE(lora.tf32);
  EXPECT_EQ(lora.frozen_options().device(), gpu);
  const Placement full = placement_for(gpu, PlacementUse::kTrainFull);
  EXPECT_EQ(full.unet, at::kFloat) << "the whole UNet trains on fp32 masters";
  EXPECT_TRUE(full.autocast_bf16);
  EXPECT_EQ(full.describe(), "cuda:1, frozen bf16, UNet fp32, VAE fp32, bf16 autocast, TF32");
  EXPECT_EQ(placement_for(gpu, PlacementUse::kGenerate).vae, at::kBFloat16);
  EXPECT_EQ(placement_for(gpu, PlacementUse::kPreprocess).frozen, at::kBFloat16)
      << "the mask, caption and upscale commands run as training's preprocessing does";
}

TEST(Placement, AutoIsTheGpuWhenThereIsOneAndAMissingGpuIsNamed) {
  if (torch::cuda::is_available()) {
    EXPECT_TRUE(resolve_device("auto", 0).is_cuda());
    return;
  }
  EXPECT_TRUE(resolve_device("auto", 0).is_cpu());
  try {
    resolve_device("cuda:0", 0);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--device cuda:0"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace xltune
