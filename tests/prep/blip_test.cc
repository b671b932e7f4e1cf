// BLIP captioning against transformers (tests/reference/make_blip_models.py): two tiny random
// configs, the processor's pixels on two sample photos and portrait and square crops, the image
// embeddings, the decoder's logits, greedy and beam token ids and their decoded text; seeded
// sampling; the full-size key and shape list; bad model folders.
#include "prep/blip_captioner.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/fnv1a.h"
#include "core/safetensors.h"
#include "data/image_convert.h"
#include "data/image_decode.h"
#include "prep/key_list.h"
#include "test_util.h"
#include "test_paths.h"

namespace xltune {
namespace {

namespace fs = std::filesystem;
using testing_util::max_abs_diff;
using testing_util::relative_diff;

std::string blip_dir(const std::string& name) { return std::string(xltune::test_paths::testdata_dir()) + "/blip/" + name; }

std::vector<int64_t> ids_of(const at::Tensor& t) {
  at::Tensor c = t.to(at::kLong).contiguous();
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

// transformers pads a finished beam's row with [SEP]s up to the longest returned: ours stops at
// the first [SEP].
std::vector<int64_t> through_first_sep(std::vector<int64_t> ids, int64_t sep) {
  for (size_t i = 1; i < ids.size(); ++i)
    if (ids[i] == sep) return std::vector<int64_t>(ids.begin(), ids.begin() + static_cast<long>(i) + 1);
  return ids;
}

TEST(BlipParity, PixelsEmbeddingsLogitsAndCaptionsMatchTransformers) {
  for (const char* name : {"a", "b"}) {
    BlipCaptioner captioner(blip_dir(name), at::TensorOptions().dtype(at::kFloat));
    SafetensorsFile dump(blip_dir(name) + "/reference.safetensors");
    const auto ref = nlohmann::json::parse(read_file(blip_dir(name) + "/reference.json"));
    const int64_t sep = captioner.model()->config().text.sep_token_id;
    for (size_t i = 0; i < ref["photos"].size(); ++i) {
      const std::string k = std::to_string(i) + ".";
      const cv::Mat rgb = decode_image_file(ref["photos"][i].get<std::string>(), "photo").rgb;
      const std::vector<ImageView> image{image_view(rgb)};
      // The processor: Pillow's bicubic resize on 8 bits, then rescale and normalise.
      const at::Tensor pixels = process_image(captioner.processor(), rgb.data, rgb.cols, rgb.rows);
      // Measured on ATen's native, avx2 and default CPU kernels (tests/tolerances): pixels 0,
      // image embeds up to 4.2e-7, logits up to 6.9e-7 (avx2 and default; 0 natively).
      EXPECT_MEASURED_BELOW(std::string("BLIP ") + name + " pixels", max_abs_diff(pixels[0], dump.tensor(k + "pixel_values")), 1e-5);
      // The vision tower and the decoder on transformers' own pixels and ids.
      const at::Tensor theirs = dump.tensor(k + "pixel_values").unsqueeze(0);
      const at::Tensor embeds = captioner.model()->image_embeds(theirs);
      const double re = relative_diff(embeds[0], dump.tensor(k + "image_embeds"));
      EXPECT_MEASURED_BELOW(std::string("BLIP ") + name + " image embeds (relative)", re, 2e-6);
      const at::Tensor greedy = dump.tensor(k + "greedy");
      const at::Tensor logits = captioner.model()->logits(theirs, greedy.unsqueeze(0));
      const double rl = relative_diff(logits[0], dump.tensor(k + "logits"));
      EXPECT_MEASURED_BELOW(std::string("BLIP ") + name + " logits (relative)", rl, 4e-6);
      // Greedy and beam search end to end: the same tokens, the same text.
      CaptionDecodingOptions o;
      o.max_length = ref["max_length"].get<int64_t>();
      o.decoding = CaptionDecoding::kGreedy;
      const auto g = captioner.token_ids(image, o, {0});
      EXPECT_EQ(g[0], through_first_sep(ids_of(greedy), sep)) << name << " photo " << i;
      EXPECT_EQ(captioner.text().decode(g[0]), ref["texts"][k + "greedy"].get<std::string>()) << name;
      o.decoding = CaptionDecoding::kBeam;
      o.num_beams = ref["num_beams"].get<int64_t>();
      const auto b = captioner.token_ids(image, o, {0});
      EXPECT_EQ(b[0], through_first_sep(ids_of(dump.tensor(k + "beam")), sep)) << name << " photo " << i;
      EXPECT_EQ(captioner.captions(image, o, {0})[0], ref["texts"][k + "beam"].get<std::string>()) << name;
      std::cout << name << " photo " << i << ": image embeds " << re << ", logits " << rl
                << " of their largest value; greedy '" << captioner.text().decode(g[0]) << "'\n";
    }
  }
}

TEST(BlipSampling, SeededCaptionsRepeatAndDoNotDependOnTheBatch) {
  BlipCaptioner captioner(blip_dir("a"), at::TensorOptions().dtype(at::kFloat));
  const auto ref = nlohmann::json::parse(read_file(blip_dir("a") + "/reference.json"));
  std::vector<cv::Mat> photos;
  std::vector<ImageView> images;
  for (int i = 0; i < 2; ++i) photos.push_back(decode_image_file(ref["photos"][i].get<std::string>(), "photo").rgb);
  for (const cv::Mat& m : photos) images.push_back(image_view(m));
  CaptionDecodingOptions o;  // the reference's: sampling, top-k 50, temperature 0.7
  o.max_length = 20;
  o.seed = 7;
  const auto both = captioner.token_ids(images, o, {10, 11});
  EXPECT_EQ(captioner.token_ids(images, o, {10, 11}), both);
  // Alone, each image draws the same tokens as in the batch.
  EXPECT_EQ(captioner.token_ids({images[1]}, o, {11})[0], both[1]);
  // Another seed or another key draws other tokens (20 tokens from 57: a repeat is vanishingly rare).
  o.seed = 8;
  EXPECT_NE(captioner.token_ids(images, o, {10, 11}), both);
  o.seed = 7;
  EXPECT_NE(captioner.token_ids({images[0]}, o, {12})[0], both[0]);
  // Greedy is sampling's limit: top_k 1 draws the most likely token every time.
  o.top_k = 1;
  CaptionDecodingOptions greedy = o;
  greedy.decoding = CaptionDecoding::kGreedy;
  EXPECT_EQ(captioner.token_ids(images, o, {10, 11}), captioner.token_ids(images, greedy, {10, 11}));
}

// Preprocessing's interface (core/image_models.h): the constructed decoding, each image keyed
// by its name's hash; one image a batch on a CPU.
TEST(BlipSampling, TheCaptionerInterfaceKeysDrawsByName) {
  CaptionDecodingOptions o;
  o.max_length = 20;
  o.seed = 7;
  BlipCaptioner captioner(blip_dir("a"), at::TensorOptions().dtype(at::kFloat), o);
  EXPECT_EQ(captioner.batch_size(), 1u);
  const auto ref = nlohmann::json::parse(read_file(blip_dir("a") + "/reference.json"));
  std::vector<cv::Mat> photos;
  for (int i = 0; i < 2; ++i) photos.push_back(decode_image_file(ref["photos"][i].get<std::string>(), "photo").rgb);
  const std::vector<ImageView> images{image_view(photos[0]), image_view(photos[1])};
  const std::vector<std::string> names{"set/a.png", "set/b.png"};
  EXPECT_EQ(captioner.captions(images, names), captioner.captions(images, o, {fnv1a64(names[0]), fnv1a64(names[1])}));
  EXPECT_EQ(captioner.captions({images[1]}, {names[1]})[0], captioner.captions(images, names)[1]);
  EXPECT_THROW(captioner.captions(images, {names[0]}), Error);
}

TEST(BlipFullSize, KeysAndShapesOfBlipImageCaptioningLarge) {
  const std::string dir = blip_dir("full");
  BlipConfig c = BlipConfig::from_json_text(read_file(dir + "/config.json"), dir + "/config.json");
  Blip model(c, at::TensorOptions().device(at::kMeta));
  const size_t n = testing_util::expect_key_list(*model, dir + "/keys.json", [](const std::string& k) {
    return k.find("position_ids") != std::string::npos ||      // buffers, not weights
           k.find("cls.predictions.decoder.") != std::string::npos;  // tied (blip.h)
  });
  EXPECT_EQ(n, 615u);  // 617 in transformers' state dict, less the two tied decoder tensors
  EXPECT_EQ(c.text.vocab_size, 30524);
  EXPECT_EQ(c.text.encoder_hidden_size, 1024);
  EXPECT_EQ(c.vision.image_size, 384);
}

TEST(BlipFolders, BadFoldersEndInOneMessageNamingWhatIsWrong) {
  testing_util::ScopedTempDir scoped("blip_folders");
  const fs::path tmp = scoped.path();
  const auto opts = at::TensorOptions().dtype(at::kFloat);
  auto copy_of = [&](const std::string& name) {
    const fs::path d = tmp / name;
    fs::copy(blip_dir("a"), d, fs::copy_options::recursive);
    return d.string();
  };
  using testing::HasSubstr;
  EXPECT_THAT([&] { BlipCaptioner((tmp / "none").string(), opts); },
              testing::ThrowsMessage<Error>(HasSubstr("no such folder")));
  std::string d = copy_of("no_config");
  fs::remove(d + "/config.json");
  EXPECT_THAT([&] { BlipCaptioner(d, opts); }, testing::ThrowsMessage<Error>(HasSubstr("no config.json")));
  d = copy_of("pickle");
  fs::remove(d + "/model.safetensors");
  write_file_atomic(d + "/pytorch_model.bin", "not really a pickle");
  EXPECT_THAT([&] { BlipCaptioner(d, opts); }, testing::ThrowsMessage<Error>(HasSubstr("convert-weights")));
  d = copy_of("no_vocab");
  fs::remove(d + "/vocab.txt");
  EXPECT_THAT([&] { BlipCaptioner(d, opts); }, testing::ThrowsMessage<Error>(HasSubstr("no vocab.txt")));
  d = copy_of("no_processor");
  fs::remove(d + "/preprocessor_config.json");
  EXPECT_THAT([&] { BlipCaptioner(d, opts); }, testing::ThrowsMessage<Error>(HasSubstr("no preprocessor_config.json")));
  // A config that does not fit the weights: the loader names a tensor and both shapes.
  d = copy_of("wrong_shapes");
  auto config = nlohmann::json::parse(read_file(d + "/config.json"));
  config["text_config"]["intermediate_size"] = 44;
  write_file_atomic(d + "/config.json", config.dump());
  EXPECT_THAT([&] { BlipCaptioner(d, opts); }, testing::ThrowsMessage<Error>(HasSubstr("intermediate.dense.weight")));
}

}  // namespace
}  // namespace xltune
