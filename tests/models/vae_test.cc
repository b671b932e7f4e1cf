// The SDXL VAE against diffusers (tests/reference/make_sdxl_vaes.py): latent mean,
// log-variance, a sample from given noise, decode, and gradients; single-file loading; the
// full-size key list and parameter count.
#include "models/vae.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "test_util.h"
#include "core/layers.h"
#include "core/safetensors.h"
#include "models/model_loading.h"
#include "test_paths.h"

namespace xltune {
namespace {

using testing_util::max_abs_diff;
using testing_util::scaled_diff;

class VaeParity : public ::testing::TestWithParam<std::string> {};

TEST_P(VaeParity, EncodeSampleDecodeAndGradientsMatchDiffusers) {
  const std::string dir = test_paths::sdxl_reference_dir() + "/" + GetParam();
  Vae vae = load_vae(dir);
  SafetensorsFile dump(dir + "/parity.safetensors");
  at::Tensor image = dump.tensor("image").clone().requires_grad_(true);
  LatentDistribution dist = vae->encode(image);
  double worst = 0;
  for (const auto& [name, t] : std::vector<std::pair<std::string, at::Tensor>>{
           {"mean", dist.mean}, {"logvar", dist.logvar}, {"sample", dist.sample(dump.tensor("noise"))}}) {
    worst = std::max(worst, max_abs_diff(t, dump.tensor(name)));
  }
  // Measured on ATen's native, avx2 and default CPU kernels (tests/tolerances), worst of vae_a
  // and vae_b: encode 1.2e-6, decode 7.5e-6, gradients (scaled) image 7.4e-7, latent 3.3e-6.
  EXPECT_MEASURED_BELOW(GetParam() + " encode", worst, 5e-6);
  (dist.mean * dump.tensor("R_mean")).sum().backward();
  double d_grad_image = scaled_diff(image.grad(), dump.tensor("grad_image"));
  EXPECT_MEASURED_BELOW(GetParam() + " image gradient (scaled)", d_grad_image, 4e-6);

  at::Tensor z = dump.tensor("z").clone().requires_grad_(true);
  at::Tensor decoded = vae->decode(z);
  double d_dec = max_abs_diff(decoded, dump.tensor("decoded"));
  EXPECT_MEASURED_BELOW(GetParam() + " decode", d_dec, 3e-5);
  (decoded * dump.tensor("R_dec")).sum().backward();
  double d_grad_z = scaled_diff(z.grad(), dump.tensor("grad_z"));
  EXPECT_MEASURED_BELOW(GetParam() + " latent gradient (scaled)", d_grad_z, 1.5e-5);
  std::printf("%s: encode max |diff| %.3g, decode %.3g, gradients (scaled) image %.3g z %.3g\n", GetParam().c_str(),
              worst, d_dec, d_grad_image, d_grad_z);
}

INSTANTIATE_TEST_SUITE_P(Configs, VaeParity, ::testing::Values("vae_a", "vae_b"));

TEST(VaeSingleFile, SameOutputsAsTheFolder) {
  const std::string folder_dir = test_paths::sdxl_reference_dir() + "/" + std::string(XLTUNE_SINGLE_FILE_VAE);
  Vae folder = load_vae(folder_dir);
  Vae single = load_vae_from_single_file(test_paths::sdxl_reference_dir() + "/unet_sdxl_test/single_file.safetensors",
                                         folder->config());
  SafetensorsFile dump(folder_dir + "/parity.safetensors");
  at::NoGradGuard no_grad;
  EXPECT_TRUE(at::equal(folder->encode(dump.tensor("image")).mean, single->encode(dump.tensor("image")).mean));
  EXPECT_TRUE(at::equal(folder->decode(dump.tensor("z")), single->decode(dump.tensor("z"))));
}

TEST(VaeFullSize, KeysShapesAndParameterCountEqualDiffusers) {
  nlohmann::json want = nlohmann::json::parse(read_file(test_paths::sdxl_reference_dir() + "/full_size_keys.json"));
  VaeConfig config = VaeConfig::from_json_file(test_paths::sdxl_reference_dir() + "/full_size/vae/config.json");
  EXPECT_DOUBLE_EQ(config.scaling_factor, 0.13025);
  Vae vae(config, at::TensorOptions().device(at::kMeta));
  std::map<std::string, std::vector<int64_t>> ours, theirs;
  for (const auto& p : vae->named_parameters())
    ours[p.key()] = std::vector<int64_t>(p.value().sizes().begin(), p.value().sizes().end());
  for (const auto& t : want["vae"]["tensors"]) theirs[t[0].get<std::string>()] = t[1].get<std::vector<int64_t>>();
  EXPECT_EQ(ours.size(), theirs.size());
  for (const auto& [k, s] : theirs)
    if (!ours.count(k) || ours[k] != s) ADD_FAILURE() << "differs: " << k;
  EXPECT_EQ(nn::parameter_count(*vae), 83653863);
}

}  // namespace
}  // namespace xltune
