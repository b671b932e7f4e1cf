// CLIPSeg against transformers (tests/reference/make_clipseg_models.py): two tiny random configs,
// the processor's pixels on two sample photos and portrait, landscape and square crops, the token
// ids, the logits and the reference trainer's mask; the full-size key and shape list; bad model
// folders.
#include "prep/clipseg.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/safetensors.h"
#include "data/image_convert.h"
#include "data/image_decode.h"
#include "prep/clipseg_masker.h"
#include "prep/key_list.h"
#include "test_util.h"
#include "test_paths.h"

namespace xltune {
namespace {

namespace fs = std::filesystem;
using testing_util::max_abs_diff;
using testing_util::relative_diff;

std::string clipseg_dir(const std::string& name) { return std::string(xltune::test_paths::testdata_dir()) + "/clipseg/" + name; }

TEST(ClipSegParity, PixelsLogitsAndMasksMatchTransformers) {
  for (const char* name : {"a", "b"}) {
    ClipSegMasker masker(clipseg_dir(name), at::TensorOptions().dtype(at::kFloat), "a round object", 1.0);
    SafetensorsFile dump(clipseg_dir(name) + "/reference.safetensors");
    const auto photos = nlohmann::json::parse(read_file(clipseg_dir(name) + "/photos.json"));
    for (size_t i = 0; i < photos.size(); ++i) {
      const std::string k = std::to_string(i) + ".";
      const cv::Mat rgb = decode_image_file(photos[i].get<std::string>(), "photo").rgb;
      // The processor: Pillow's bilinear resize on 8 bits, then rescale and normalise.
      at::Tensor pixels = process_image(masker.processor(), rgb.data, rgb.cols, rgb.rows);
      // Measured on ATen's native, avx2 and default CPU kernels (tests/tolerances): pixels 0;
      // logits 0 natively, up to 1.4e-6 (a) and 6.1e-6 (b: the refined transposed convolution)
      // on the others; masks within 1 level (a value crossing a rounding step).
      EXPECT_MEASURED_BELOW(std::string("CLIPSeg ") + name + " pixels", max_abs_diff(pixels[0], dump.tensor(k + "pixel_values")), 1e-5);
      // The token ids of [prompt, ""], padded to 77.
      const at::Tensor ids = dump.tensor(k + "input_ids");
      std::vector<int64_t> ours = masker.tokenizer().encode("a round object", 77), empty = masker.tokenizer().encode("", 77);
      ours.insert(ours.end(), empty.begin(), empty.end());
      EXPECT_TRUE(at::equal(at::tensor(ours).view({2, -1}), ids)) << name;
      // The model on transformers' own inputs, then end to end.
      at::Tensor logits = masker.model()->forward(dump.tensor(k + "pixel_values").unsqueeze(0).repeat({2, 1, 1, 1}), ids);
      const double r = relative_diff(logits, dump.tensor(k + "logits"));
      EXPECT_MEASURED_BELOW(std::string("CLIPSeg ") + name + " logits (relative)", r, 3e-5);
      at::Tensor end_to_end = masker.logits(image_view(rgb), "a round object");
      EXPECT_MEASURED_BELOW(std::string("CLIPSeg ") + name + " logits end to end (relative)",
                            relative_diff(end_to_end, dump.tensor(k + "logits")), 3e-5);
      // The mask: the same 8-bit values but where float noise crosses a truncation step.
      Image m = masker.mask(image_view(rgb), "photo");
      ASSERT_EQ(m.channels, 1);
      at::Tensor mine = at::from_blob(m.pixels.data(), {m.height, m.width}, at::kByte).to(at::kInt);
      at::Tensor theirs = dump.tensor(k + "mask").to(at::kInt);
      ASSERT_EQ(mine.sizes(), theirs.sizes());
      const int worst = (mine - theirs).abs().max().item<int>();
      EXPECT_MEASURED_BELOW(std::string("CLIPSeg ") + name + " mask (levels)", worst, 3);
      EXPECT_LT((mine != theirs).to(at::kDouble).mean().item<double>(), 0.01) << name;
      std::cout << name << " photo " << i << " " << rgb.cols << "x" << rgb.rows << ": logits " << r
                << " of their largest value, mask within " << worst << " levels\n";
    }
  }
}

TEST(ClipSegFullSize, KeysAndShapesOfClipsegRd64Refined) {
  const std::string dir = clipseg_dir("full");
  ClipSegConfig c = ClipSegConfig::from_json_text(read_file(dir + "/config.json"), dir + "/config.json");
  ClipSeg model(c, at::TensorOptions().device(at::kMeta));
  const size_t n = testing_util::expect_key_list(*model, dir + "/keys.json", [](const std::string& k) {
    return k.find("position_ids") != std::string::npos;  // buffers, not weights
  });
  EXPECT_GT(n, 400u);  // the hub's model: 462 tensors
}

TEST(ClipSegLoading, BadFoldersEndInOneMessage) {
  const std::string base = std::string(xltune::test_paths::testdata_dir()) + "/clipseg/bad";
  fs::remove_all(base);
  auto copy = [&](const std::string& name) {
    const std::string d = base + "/" + name;
    fs::create_directories(base);
    fs::copy(clipseg_dir("a"), d, fs::copy_options::recursive);
    return d;
  };
  const auto opts = at::TensorOptions().dtype(at::kFloat);
  EXPECT_THAT([&] { ClipSegMasker(base + "/none", opts, "a cat"); },
              ::testing::ThrowsMessage<Error>(::testing::HasSubstr("no such folder")));
  const std::string no_config = copy("no_config");
  fs::remove(no_config + "/config.json");
  EXPECT_THAT([&] { ClipSegMasker(no_config, opts, "a cat"); }, ::testing::ThrowsMessage<Error>(::testing::HasSubstr("no config.json")));
  const std::string pickle = copy("pickle");
  fs::rename(pickle + "/model.safetensors", pickle + "/pytorch_model.bin");
  EXPECT_THAT([&] { ClipSegMasker(pickle, opts, "a cat"); },
              ::testing::ThrowsMessage<Error>(::testing::HasSubstr("pytorch_model.bin")));
  const std::string other = copy("other_shapes");  // b's weights under a's config
  fs::copy_file(clipseg_dir("b") + "/model.safetensors", other + "/model.safetensors",
                fs::copy_options::overwrite_existing);
  EXPECT_THAT([&] { ClipSegMasker(other, opts, "a cat"); }, ::testing::ThrowsMessage<Error>(::testing::HasSubstr("CLIPSeg")));
  const std::string no_tok = copy("no_tokenizer");
  fs::remove(no_tok + "/vocab.json");
  EXPECT_THAT([&] { ClipSegMasker(no_tok, opts, "a cat"); }, ::testing::ThrowsMessage<Error>(::testing::HasSubstr("vocab.json")));
  fs::remove_all(base);
}

}  // namespace
}  // namespace xltune
