// Note [Attention kernels]: each shape's kernel logged once, --attention forcing one, and a kernel
// the device lacks named in the error.
#include "core/attention_kernel.h"

#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "core/error.h"
#include "core/placement.h"

namespace xltune {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Every test leaves the process as it found it: all kernels on, nothing remembered.
class AttentionKernelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    set_attention_kernel(AttentionKernel::kAuto);
    clear_attention_choices();
  }
  void TearDown() override { SetUp(); }
  static at::Tensor random(std::vector<int64_t> shape, uint64_t seed) {
    at::Generator g = at::make_generator<at::CPUGeneratorImpl>(seed);
    return at::randn(shape, g, at::TensorOptions().dtype(at::kFloat));
  }
};

TEST_F(AttentionKernelTest, EachShapeIsLoggedOnceWithTheKernelLibtorchPicks) {
  const at::Tensor q = random({1, 2, 8, 16}, 1), k = random({1, 2, 5, 16}, 2), v = random({1, 2, 5, 16}, 3);
  attention(q, k, v);
  attention(q, k, v);  // the same shape: no new line
  attention(q, q, q, /*is_causal=*/true);
  const at::Tensor qg = q.clone().requires_grad_(true);
  attention(qg, k, v);
  // On the CPU libtorch 2.13 picks its flash kernel for fp32 whenever it is enabled (sdp_utils_cpp).
  EXPECT_THAT(attention_choices(), ElementsAre("[1, 2, 8, 16] x [1, 2, 5, 16] fp32 on cpu: flash",
                                               "[1, 2, 8, 16] x [1, 2, 8, 16] fp32 causal on cpu: flash",
                                               "[1, 2, 8, 16] x [1, 2, 5, 16] fp32 grad on cpu: flash"));
  {
    at::NoGradGuard no_grad;  // inputs that need gradients, outside autograd: not a grad shape
    attention(qg, k, v);
  }
  EXPECT_EQ(attention_choices().size(), 3u);
}

TEST_F(AttentionKernelTest, AForcedKernelIsTheOneThatRuns) {
  const at::Tensor q = random({2, 3, 16, 8}, 4), k = random({2, 3, 7, 8}, 5), v = random({2, 3, 7, 8}, 6);
  const at::Tensor flash = std::get<0>(at::_scaled_dot_product_flash_attention_for_cpu(q, k, v));
  const at::Tensor math = std::get<0>(at::_scaled_dot_product_attention_math(q, k, v));
  ASSERT_TRUE(at::allclose(flash, math, 1e-5, 1e-6)) << "the two kernels agree to rounding";

  EXPECT_TRUE(at::equal(attention(q, k, v), flash)) << "auto on the CPU: flash, bit for bit";
  set_attention_kernel(AttentionKernel::kMath);
  EXPECT_TRUE(at::equal(attention(q, k, v), math)) << "--attention math: the math kernel, bit for bit";
  set_attention_kernel(AttentionKernel::kFlash);
  EXPECT_TRUE(at::equal(attention(q, k, v), flash));
  EXPECT_THAT(attention_choices(), ElementsAre("[2, 3, 16, 8] x [2, 3, 7, 8] fp32 on cpu: flash"))
      << "switching the kernel forgets the choices made under the old switches";
}

TEST_F(AttentionKernelTest, AKernelTheDeviceLacksIsAnErrorNamingTheOptionAndTheShape) {
  const at::Tensor q = random({1, 2, 8, 16}, 7);
  for (AttentionKernel lacking : {AttentionKernel::kEfficient, AttentionKernel::kCudnn}) {
    set_attention_kernel(lacking);
    try {
      attention(q, q, q);
      FAIL() << "the CPU has no " << attention_kernel_name(lacking) << " kernel";
    } catch (const Error& e) {
      EXPECT_THAT(e.what(), HasSubstr(std::string("--attention ") + attention_kernel_name(lacking) +
                                      ": no enabled attention kernel runs [1, 2, 8, 16] x [1, 2, 8, 16] fp32 on cpu"));
      EXPECT_THAT(e.what(), HasSubstr("choose another kernel, or auto"));
    }
  }
  EXPECT_TRUE(attention_choices().empty()) << "a refused shape is not a choice";
}

TEST_F(AttentionKernelTest, ThePlacementSetsLibtorchsSwitches) {
  Placement p = decide_placement("cpu", 0, PlacementUse::kTrainLora);
  EXPECT_EQ(p.attention, AttentionKernel::kAuto);
  p.attention = AttentionKernel::kMath;
  EXPECT_EQ(p.describe(), "cpu, frozen fp32, UNet fp32, VAE fp32, attention math");
  apply_placement(p);
  const at::Context& ctx = at::globalContext();
  EXPECT_EQ(attention_kernel(), AttentionKernel::kMath);
  EXPECT_TRUE(ctx.userEnabledMathSDP());
  EXPECT_FALSE(ctx.userEnabledFlashSDP());
  EXPECT_FALSE(ctx.userEnabledMemEfficientSDP());
  EXPECT_FALSE(ctx.userEnabledCuDNNSDP());
  p.attention = AttentionKernel::kAuto;
  apply_placement(p);
  EXPECT_TRUE(ctx.userEnabledMathSDP() && ctx.userEnabledFlashSDP() && ctx.userEnabledMemEfficientSDP() &&
              ctx.userEnabledCuDNNSDP());
}

TEST_F(AttentionKernelTest, TheOptionsNamesAreTheKernels) {
  std::vector<std::string> names;
  for (const auto& [name, kernel] : attention_kernel_choices()) {
    names.push_back(name);
    EXPECT_EQ(name, attention_kernel_name(kernel));
  }
  EXPECT_THAT(names, ElementsAre("auto", "flash", "efficient", "cudnn", "math"));
}

}  // namespace
}  // namespace xltune
