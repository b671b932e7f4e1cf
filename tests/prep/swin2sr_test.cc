// Swin2SR against transformers (tests/reference/make_swin2sr_models.py): five tiny random configs
// (the real-world model's nearest+conv x4 and 1conv; pixelshuffle x2 with 3conv and img_range 255;
// pixelshuffledirect x3 on one channel with windows cut to image_size; pixelshuffle x4;
// pixelshuffle x3 without q/v bias), the processor's pixels on four sample crops (landscape,
// square, portrait), the reconstruction and the reference trainer's 8-bit image; bf16; tiled
// against untiled; the full-size key and shape list; bad model folders.
#include "prep/swin2sr.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/image.h"
#include "core/safetensors.h"
#include "prep/swin2sr_upscaler.h"
#include "prep/key_list.h"
#include "test_util.h"
#include "test_paths.h"

namespace xltune {
namespace {

namespace fs = std::filesystem;
using testing_util::max_abs_diff;
using testing_util::relative_diff;

std::string swin2sr_dir(const std::string& name) { return std::string(xltune::test_paths::testdata_dir()) + "/swin2sr/" + name; }

const auto kFloat32 = at::TensorOptions().dtype(at::kFloat);

TEST(Swin2SrParity, PixelsAndReconstructionMatchTransformers) {
  for (const char* name : {"a", "b", "c", "d", "e"}) {
    const std::string dir = swin2sr_dir(name);
    Swin2Sr model = load_swin2sr(dir, kFloat32);
    const auto processor = Swin2SrProcessorConfig::from_json_text(read_file(dir + "/preprocessor_config.json"), dir);
    SafetensorsFile dump(dir + "/reference.safetensors");
    for (const char* k : {"0.", "1.", "2.", "3."}) {  // landscape, square, portrait, portrait
      at::Tensor rgb = dump.tensor(std::string(k) + "rgb").contiguous();
      const int h = static_cast<int>(rgb.size(0)), w = static_cast<int>(rgb.size(1));
      // The processor: x / 255, the symmetric pad to the next multiple of 8 (a whole 8 for 24 px).
      at::Tensor pixels = swin2sr_pixels(processor, rgb.data_ptr<uint8_t>(), w, h)[0];
      const at::Tensor theirs = dump.tensor(std::string(k) + "pixel_values");
      ASSERT_EQ(pixels.size(1), processor.padded(h));
      if (model->config().num_channels == 1) pixels = pixels.slice(0, 0, 1);
      // Measured on ATen's native, avx2 and default CPU kernels (tests/tolerances): pixels 0;
      // reconstructions up to 2.0e-6 of their largest value (5.8e-7 natively, with gelu_new).
      EXPECT_MEASURED_BELOW(std::string("Swin2SR ") + name + " pixels", max_abs_diff(pixels, theirs), 1e-5);
      // The model on transformers' own pixels.
      at::NoGradGuard no_grad;
      const at::Tensor reconstruction = model->forward(theirs.unsqueeze(0))[0];
      const double r = relative_diff(reconstruction, dump.tensor(std::string(k) + "reconstruction"));
      EXPECT_MEASURED_BELOW(std::string("Swin2SR ") + name + " reconstruction (relative)", r, 1e-5);
      std::cout << name << " crop " << k << " " << w << "x" << h << ": reconstruction " << r
                << " of its largest value\n";
    }
  }
}

TEST(Swin2SrParity, EightBitImagesMatchTheReferenceWithThePadCroppedOff) {
  for (const char* name : {"a", "b"}) {
    Swin2SrUpscaler upscaler(swin2sr_dir(name), kFloat32);
    SafetensorsFile dump(swin2sr_dir(name) + "/reference.safetensors");
    for (const char* k : {"0.", "1.", "2.", "3."}) {  // landscape, square, portrait, portrait
      at::Tensor rgb = dump.tensor(std::string(k) + "rgb").contiguous();
      const int h = static_cast<int>(rgb.size(0)), w = static_cast<int>(rgb.size(1));
      Image up = upscaler.upscale(ImageView(rgb.data_ptr<uint8_t>(), w, h, 3), k);
      ASSERT_EQ(up.width, upscaler.scale() * w);
      ASSERT_EQ(up.height, upscaler.scale() * h);
      ASSERT_EQ(up.channels, 3);
      at::Tensor mine = at::from_blob(up.pixels.data(), {up.height, up.width, 3}, at::kByte).to(at::kInt);
      at::Tensor theirs = dump.tensor(std::string(k) + "image").to(at::kInt);
      ASSERT_EQ(mine.sizes(), theirs.sizes());
      // The same bytes but where float noise crosses a rounding step.
      EXPECT_MEASURED_BELOW(std::string("Swin2SR ") + name + " 8-bit image (levels)", (mine - theirs).abs().max().item<int>(), 3);  // measured 1
      EXPECT_LT((mine != theirs).to(at::kDouble).mean().item<double>(), 0.001) << name;
    }
  }
}

TEST(Swin2SrParity, Bf16IsCloseToFp32) {
  // What a GPU runs: the weights, the coordinate table, the mean and the masks in bf16.
  for (const char* name : {"a", "b"}) {
    Swin2Sr fp32 = load_swin2sr(swin2sr_dir(name), kFloat32);
    Swin2Sr bf16 = load_swin2sr(swin2sr_dir(name), at::TensorOptions().dtype(at::kBFloat16));
    SafetensorsFile dump(swin2sr_dir(name) + "/reference.safetensors");
    at::NoGradGuard no_grad;
    const at::Tensor pixels = dump.tensor("0.pixel_values").unsqueeze(0);
    const at::Tensor low = bf16->forward(pixels);
    EXPECT_EQ(low.scalar_type(), at::kBFloat16);
    const double r = relative_diff(low.to(at::kFloat), fp32->forward(pixels));
    // bf16 rounding, not kernels: measured 0.041 (a) and 0.0075 (b) on every CPU path.
    EXPECT_MEASURED_BELOW(std::string("Swin2SR ") + name + " bf16 vs fp32 (relative)", r, 0.1);
    std::cout << name << ": bf16 " << r << " of the largest fp32 value\n";
  }
}

TEST(Swin2SrTiling, TiledEqualsUntiledWhereTheOverlapExceedsTheReach) {
  // b: 4 layers of 4-pixel windows and 3conv groups. A tile's edge reaches about 16 pixels in,
  // so with overlap 64 (16 dropped per side, 32 blended) tiles agree with the whole image to
  // float noise (Python against transformers: 7.6e-7); with overlap 16 (4 dropped, 8 blended)
  // the seams differ by about 1e-3 of the largest value (Python: 8.8e-4).
  Swin2SrUpscaler upscaler(swin2sr_dir("b"), kFloat32);
  SafetensorsFile dump(swin2sr_dir("b") + "/reference.safetensors");
  at::Tensor rgb = dump.tensor("tiling.rgb").contiguous();
  const int h = static_cast<int>(rgb.size(0)), w = static_cast<int>(rgb.size(1));  // 100 x 120
  const at::Tensor pixels = swin2sr_pixels(upscaler.processor(), rgb.data_ptr<uint8_t>(), w, h);
  upscaler.set_tiling(0, 0);
  const at::Tensor whole = upscaler.reconstruct(pixels);
  ASSERT_EQ(whole.size(2), 2 * pixels.size(2));
  upscaler.set_tiling(96, 64);  // 2 x 2 tiles over 104 x 128
  const double far = relative_diff(upscaler.reconstruct(pixels), whole);
  // Measured 7.6e-7 on every CPU path (7.3e-7 with ATen's default kernels).
  EXPECT_MEASURED_BELOW("Swin2SR tiles 96 / overlap 64 vs whole (relative)", far, 4e-6);
  upscaler.set_batch(1);
  const double one_by_one = relative_diff(upscaler.reconstruct(pixels), whole);
  EXPECT_MEASURED_BELOW("Swin2SR tiles one per batch vs whole (relative)", one_by_one, 4e-6);
  upscaler.set_batch(4);
  upscaler.set_tiling(64, 16);
  const double near = relative_diff(upscaler.reconstruct(pixels), whole);
  EXPECT_GT(near, 1e-5);
  EXPECT_LT(near, 5e-3);
  std::cout << "tiles 96 / overlap 64: " << far << " (one per batch " << one_by_one << "); tiles 64 / overlap 16: "
            << near << " of the largest value\n";
  // A tile as large as the image is the untiled path; the 8-bit result is 2 x the crop tiled too.
  upscaler.set_tiling(128, 16);
  EXPECT_EQ(max_abs_diff(upscaler.reconstruct(pixels), whole), 0.0);
  upscaler.set_tiling(64, 16);
  Image up = upscaler.upscale(ImageView(rgb.data_ptr<uint8_t>(), w, h, 3), "tiling");
  EXPECT_EQ(up.width, 2 * w);
  EXPECT_EQ(up.height, 2 * h);
  EXPECT_EQ(up.pixels.size(), static_cast<size_t>(up.width) * up.height * 3);
  EXPECT_THAT([&] { upscaler.upscale(ImageView(rgb.data_ptr<uint8_t>(), w, h, 1), "grey"); },
              ::testing::ThrowsMessage<Error>(::testing::HasSubstr("Swin2SR: expected 3 channels, got 1")));
  EXPECT_THAT([&] { upscaler.set_tiling(32, 32); },
              ::testing::ThrowsMessage<Error>(::testing::HasSubstr("fewer pixels than --tile")));
}

// caidas/swin2SR-realworld-sr-x4-64-bsrgan-psnr's config.json (the reference trainer's upscaler).
const char* kRealworldConfig = R"({
  "architectures": ["Swin2SRForImageSuperResolution"], "model_type": "swin2sr",
  "attention_probs_dropout_prob": 0.0, "depths": [6, 6, 6, 6, 6, 6], "drop_path_rate": 0.1, "embed_dim": 180,
  "hidden_act": "gelu", "hidden_dropout_prob": 0.0, "image_size": 64, "img_range": 1.0,
  "initializer_range": 0.02, "layer_norm_eps": 1e-05, "mlp_ratio": 2.0, "num_channels": 3,
  "num_heads": [6, 6, 6, 6, 6, 6], "patch_size": 1, "qkv_bias": true, "resi_connection": "1conv",
  "upsampler": "nearest+conv", "upscale": 4, "use_absolute_embeddings": false, "window_size": 8})";

TEST(Swin2SrFullSize, KeysAndShapesOfRealworldX4) {
  const std::string dir = swin2sr_dir("full");
  const Swin2SrConfig c = Swin2SrConfig::from_json_text(kRealworldConfig, "realworld config");
  const Swin2SrConfig python = Swin2SrConfig::from_json_text(read_file(dir + "/config.json"), dir + "/config.json");
  EXPECT_EQ(python.embed_dim, c.embed_dim);
  EXPECT_EQ(python.depths, c.depths);
  EXPECT_EQ(python.upsampler, c.upsampler);
  EXPECT_EQ(c.layer_window(), 8);
  EXPECT_EQ(c.layer_shift(), 4);
  Swin2Sr model(c, at::TensorOptions().device(at::kMeta));
  const size_t n = testing_util::expect_key_list(*model, dir + "/keys.json");
  EXPECT_EQ(n, 728u);  // the hub's model: 728 tensors, 12.05 M values
}

TEST(Swin2SrLoading, BadFoldersEndInOneMessage) {
  const std::string base = std::string(xltune::test_paths::testdata_dir()) + "/swin2sr/bad";
  fs::remove_all(base);
  auto copy = [&](const std::string& name) {
    const std::string d = base + "/" + name;
    fs::create_directories(base);
    fs::copy(swin2sr_dir("a"), d, fs::copy_options::recursive);
    return d;
  };
  using ::testing::HasSubstr;
  using ::testing::ThrowsMessage;
  EXPECT_THAT([&] { Swin2SrUpscaler(base + "/none", kFloat32); }, ThrowsMessage<Error>(HasSubstr("no such folder")));
  const std::string no_config = copy("no_config");
  fs::remove(no_config + "/config.json");
  EXPECT_THAT([&] { Swin2SrUpscaler(no_config, kFloat32); }, ThrowsMessage<Error>(HasSubstr("no config.json")));
  const std::string pickle = copy("pickle");
  fs::rename(pickle + "/model.safetensors", pickle + "/pytorch_model.bin");
  EXPECT_THAT([&] { Swin2SrUpscaler(pickle, kFloat32); },
              ThrowsMessage<Error>(HasSubstr("convert them with launch/convert-weights " + pickle)));
  // One weight of another shape: the message names it.
  const std::string other = copy("other_shape");
  NamedTensors tensors = load_safetensors(other + "/model.safetensors", /*copy=*/true);
  for (auto& [key, t] : tensors)
    if (key == "swin2sr.conv_after_body.weight") t = at::zeros({16, 16, 1, 1});
  save_safetensors(other + "/model.safetensors", tensors);
  EXPECT_THAT([&] { Swin2SrUpscaler(other, kFloat32); },
              ThrowsMessage<Error>(HasSubstr("swin2sr.conv_after_body.weight [16, 16, 1, 1]")));
  const std::string no_processor = copy("no_processor");
  fs::remove(no_processor + "/preprocessor_config.json");
  EXPECT_THAT([&] { Swin2SrUpscaler(no_processor, kFloat32); },
              ThrowsMessage<Error>(HasSubstr("no preprocessor_config.json")));
  const std::string aux = copy("aux");
  auto config = nlohmann::json::parse(read_file(aux + "/config.json"));
  config["upsampler"] = "pixelshuffle_aux";
  write_file_atomic(aux + "/config.json", config.dump());
  EXPECT_THAT([&] { Swin2SrUpscaler(aux, kFloat32); },
              ThrowsMessage<Error>(HasSubstr("config.json: \"upsampler\" 'pixelshuffle_aux'")));
  // A one-channel model is a model, not an RGB upscaler.
  EXPECT_THAT([&] { Swin2SrUpscaler(swin2sr_dir("c"), kFloat32); }, ThrowsMessage<Error>(HasSubstr("needs RGB")));
  fs::remove_all(base);
}

}  // namespace
}  // namespace xltune
