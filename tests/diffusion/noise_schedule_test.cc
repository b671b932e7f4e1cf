// The training noise schedule against diffusers' DDPMScheduler (tests/reference/
// make_train_references.py): alphas_cumprod of five configs, add_noise and get_velocity.
#include "diffusion/noise_schedule.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/safetensors.h"
#include "test_util.h"
#include "test_paths.h"

namespace xltune {
namespace {

using testing_util::max_abs_diff;

std::string ref(const std::string& name) { return std::string(xltune::test_paths::testdata_dir()) + "/train_refs/" + name; }

TEST(NoiseScheduleParity, AlphasNoisingAndVelocityMatchDiffusers) {
  const auto cases = nlohmann::json::parse(read_file(ref("schedules.json")));
  SafetensorsFile dump(ref("schedules.safetensors"));
  const at::Tensor x0 = dump.tensor("x0"), noise = dump.tensor("noise"), t = dump.tensor("timesteps");
  for (auto it = cases.begin(); it != cases.end(); ++it) {
    NoiseSchedule s(NoiseScheduleConfig::from_json_text(it.value().dump(), it.key()));
    const std::string k = it.key();
    // The same fp32 arithmetic as diffusers (linspace, pow, cumprod, sqrt), but the fixture's
    // kernels may be another CPU's (ATEN_CPU_CAPABILITY): values of order 1, a few ulps apart.
    const double alphas = max_abs_diff(s.alphas_cumprod(), dump.tensor(k + ".alphas_cumprod"));
    const double noisy = max_abs_diff(s.add_noise(x0, noise, t), dump.tensor(k + ".noisy"));
    const double velocity = max_abs_diff(s.velocity(x0, noise, t), dump.tensor(k + ".velocity"));
    // Measured, worst over the five configs: native (AVX-512) and avx2 kernels 6.0e-8, 0, 0;
    // ATen's default kernels 3.0e-7, 1.2e-7, 2.4e-7 (zero_snr_v: the cumprod runs to 0).
    EXPECT_MEASURED_BELOW("alphas_cumprod", alphas, 1e-6);
    EXPECT_MEASURED_BELOW("add_noise", noisy, 5e-7);
    EXPECT_MEASURED_BELOW("velocity", velocity, 1e-6);
  }
}

TEST(NoiseSchedule, SdxlValuesFromTheReferenceFacts) {
  NoiseScheduleConfig c;
  c.beta_start = 0.00085, c.beta_end = 0.012, c.beta_schedule = "scaled_linear";
  NoiseSchedule s(c);
  const at::Tensor& a = s.alphas_cumprod();
  // SDXL's published schedule: a_0 0.99915, a_499 0.2777, a_999 0.004660 (SNR 0.0047, not zero-terminal).
  EXPECT_NEAR(a[0].item<double>(), 0.99915, 1e-5);
  EXPECT_NEAR(a[499].item<double>(), 0.2777, 1e-4);
  EXPECT_NEAR(a[999].item<double>(), 0.004660, 1e-5);
  EXPECT_EQ(s.target(at::ones({1, 1}), at::zeros({1, 1}), at::zeros({1}, at::kLong)).item<float>(), 0.0f)
      << "epsilon models are trained to predict the noise";
}

TEST(NoiseSchedule, BadConfigsNameTheField) {
  EXPECT_THROW(NoiseScheduleConfig::from_json_text(R"({"beta_schedule": "exp"})", "s.json"), Error);
  EXPECT_THAT([] { NoiseScheduleConfig::from_json_text(R"({"prediction_type": "sample"})", "s.json"); },
              ::testing::ThrowsMessage<Error>(::testing::HasSubstr("s.json: \"prediction_type\" 'sample'")));
}

}  // namespace
}  // namespace xltune
