// Note [One placement]: the device --device names, and one precision policy for every command.
#include "core/placement.h"

#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/cuda.h>

#include <cstdlib>
#include <optional>
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
    EXPECT_FALSE(p.cudnn_benchmark);
    EXPECT_FALSE(p.deterministic) << "--deterministic is off unless asked for";
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
  EXPECT_TRUE(lora.cudnn_benchmark) << "training's shapes are fixed: cuDNN times its algorithms once";
  EXPECT_EQ(lora.frozen_options().device(), gpu);
  const Placement full = placement_for(gpu, PlacementUse::kTrainFull);
  EXPECT_EQ(full.unet, at::kFloat) << "the whole UNet trains on fp32 masters";
  EXPECT_TRUE(full.autocast_bf16);
  EXPECT_EQ(full.describe(), "cuda:1, frozen bf16, UNet fp32, VAE fp32, bf16 autocast, TF32, cuDNN benchmark");
  EXPECT_EQ(placement_for(gpu, PlacementUse::kGenerate).vae, at::kBFloat16);
  EXPECT_FALSE(placement_for(gpu, PlacementUse::kGenerate).cudnn_benchmark);
  EXPECT_FALSE(placement_for(gpu, PlacementUse::kPreprocess).cudnn_benchmark) << "photos of every size";
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

// Note [Deterministic mode]: the fields --deterministic sets, on a GPU decided without one.
TEST(Placement, DeterministicModeHasNoCudnnBenchmarkAndKeepsThePrecisions) {
  const at::Device gpu(at::kCUDA, 0);
  for (PlacementUse use : {PlacementUse::kTrainLora, PlacementUse::kTrainFull}) {
    const Placement fast = placement_for(gpu, use, 0, /*deterministic=*/false);
    const Placement exact = placement_for(gpu, use, 0, /*deterministic=*/true);
    EXPECT_FALSE(fast.deterministic);
    EXPECT_TRUE(exact.deterministic);
    EXPECT_TRUE(fast.cudnn_benchmark);
    EXPECT_FALSE(exact.cudnn_benchmark) << "the benchmark picks by timing: another run may pick another algorithm";
    EXPECT_EQ(exact.frozen, fast.frozen);
    EXPECT_EQ(exact.unet, fast.unet);
    EXPECT_EQ(exact.autocast_bf16, fast.autocast_bf16);
    EXPECT_EQ(exact.tf32, fast.tf32) << "TF32 is a precision, as deterministic as fp32";
  }
  EXPECT_EQ(placement_for(gpu, PlacementUse::kTrainLora, 0, true).describe(),
            "cuda:0, frozen bf16, UNet bf16, VAE fp32, TF32, deterministic");
  const Placement cpu = decide_placement("cpu", 0, PlacementUse::kTrainLora, 0, true);
  EXPECT_TRUE(cpu.deterministic);
  EXPECT_FALSE(cpu.cudnn_benchmark);
  EXPECT_EQ(cpu.describe(), "cpu, frozen fp32, UNet fp32, VAE fp32, deterministic");
}

// libtorch's process-wide flags as a test found them, put back when it ends, so that no other
// test runs under the flags this one applied.
class GlobalFlagsRestored {
 public:
  GlobalFlagsRestored()
      : algorithms_(at::globalContext().deterministicAlgorithms()),
        warn_only_(at::globalContext().deterministicAlgorithmsWarnOnly()),
        cudnn_deterministic_(at::globalContext().deterministicCuDNN()),
        cudnn_benchmark_(at::globalContext().benchmarkCuDNN()) {}
  ~GlobalFlagsRestored() {
    at::globalContext().setDeterministicAlgorithms(algorithms_, warn_only_);
    at::globalContext().setDeterministicCuDNN(cudnn_deterministic_);
    at::globalContext().setBenchmarkCuDNN(cudnn_benchmark_);
  }

 private:
  bool algorithms_, warn_only_, cudnn_deterministic_, cudnn_benchmark_;
};

// An environment variable as a test found it, put back when it ends.
class EnvRestored {
 public:
  explicit EnvRestored(const char* name) : name_(name) {
    if (const char* v = std::getenv(name)) value_ = v;
  }
  ~EnvRestored() {
    if (value_) setenv(name_, value_->c_str(), 1);
    else unsetenv(name_);
  }

 private:
  const char* name_;
  std::optional<std::string> value_;
};

TEST(Placement, ApplyingDeterministicModeMakesLibtorchRefuseNondeterministicOps) {
  const GlobalFlagsRestored restore;
  at::globalContext().setDeterministicAlgorithms(false, /*warn_only=*/true);
  apply_placement(decide_placement("cpu", 0, PlacementUse::kTrainLora, 0, /*deterministic=*/true));
  EXPECT_TRUE(at::globalContext().deterministicAlgorithms());
  EXPECT_FALSE(at::globalContext().deterministicAlgorithmsWarnOnly()) << "an op without a deterministic kernel throws";
  EXPECT_TRUE(at::globalContext().deterministicCuDNN());
  EXPECT_FALSE(at::globalContext().benchmarkCuDNN());
  // The flag reaches ATen's own checks: put_ without accumulation has no deterministic kernel
  // (torch.use_deterministic_algorithms' list; xltune does not use it).
  at::Tensor t = at::zeros({4});
  EXPECT_THROW(t.put_(at::tensor({int64_t{0}}), at::tensor({1.0f}), /*accumulate=*/false), c10::Error);
  // And a placement without it takes it off again: apply_placement sets each flag either way.
  apply_placement(decide_placement("cpu", 0, PlacementUse::kTrainLora));
  EXPECT_FALSE(at::globalContext().deterministicAlgorithms());
  EXPECT_FALSE(at::globalContext().deterministicCuDNN());
  EXPECT_NO_THROW(t.put_(at::tensor({int64_t{0}}), at::tensor({1.0f}), /*accumulate=*/false));
  EXPECT_EQ(t[0].item<float>(), 1.0f);
}

TEST(Placement, DeterministicModeOnAGpuNeedsCublasWorkspaceConfigFromTheStart) {
  const GlobalFlagsRestored restore;
  const EnvRestored workspace("CUBLAS_WORKSPACE_CONFIG"), algo("NCCL_ALGO");
  unsetenv("CUBLAS_WORKSPACE_CONFIG");
  setenv("NCCL_ALGO", "Tree", 1);
  const bool before = at::globalContext().deterministicAlgorithms();
  // A placement on a GPU, decided without one; refused before it changes anything, so no GPU is needed.
  EXPECT_THAT([] { apply_placement(placement_for(at::Device(at::kCUDA, 0), PlacementUse::kTrainLora, 0, true)); },
              testing::ThrowsMessage<Error>(testing::HasSubstr("--deterministic true on cuda:0: CUBLAS_WORKSPACE_CONFIG")));
  EXPECT_EQ(at::globalContext().deterministicAlgorithms(), before);
  set_deterministic_environment();
  ASSERT_NE(std::getenv("CUBLAS_WORKSPACE_CONFIG"), nullptr);
  EXPECT_EQ(std::string(std::getenv("CUBLAS_WORKSPACE_CONFIG")), ":4096:8");
  EXPECT_EQ(std::string(std::getenv("NCCL_ALGO")), "Tree") << "a variable the user set is theirs";
  unsetenv("NCCL_ALGO");
  setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8", 1);
  set_deterministic_environment();
  EXPECT_EQ(std::string(std::getenv("NCCL_ALGO")), "Ring");
  EXPECT_EQ(std::string(std::getenv("CUBLAS_WORKSPACE_CONFIG")), ":16:8");
}

}  // namespace
}  // namespace xltune
