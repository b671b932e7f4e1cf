// The exported files (Note [Trainer state file], train/export.h): key layouts, the alpha fold of
// the reference layout, and round trips through xltune's own LoRA reader, which must give the
// UNet the same outputs from every file. Loading in diffusers is tests/reference/train_interop.py.
#include "train/export.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/error.h"
#include "dist/communicator.h"
#include "dist/gradient_reducer.h"
#include "train/lora_loading.h"
#include "train/train_test_util.h"

namespace xltune {
namespace {

using train_testing::tiny_batch;
using train_testing::tiny_config;
using train_testing::TinyModel;

TEST(Export, KeyLayouts) {
  const std::string m = "down_blocks.1.attentions.0.transformer_blocks.0.attn1";
  EXPECT_EQ(reference_lora_key(m, "to_q", false), m + ".processor.to_q_lora.down.weight");
  EXPECT_EQ(reference_lora_key(m, "to_out.0", true), m + ".processor.to_out_lora.up.weight");
  EXPECT_EQ(kohya_lora_prefix(m, "to_out.0"), "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_out_0");
}

struct TrainedTiny {
  TinyModel tiny;
  SdxlModel model = tiny.load();
  std::unique_ptr<Trainer> trainer;
  TrainedWeights weights;
  TrainedTiny() {
    static SingleProcessCommunicator comm;
    TrainerConfig c = tiny_config();
    c.lora_alpha = 2;  // scale 1/2: the reference layout must fold it into up
    trainer = std::make_unique<Trainer>(model, c, 0.13025, std::make_shared<AfterBackwardReducer>(comm));
    for (int s = 1; s <= 3; ++s) trainer->step(s, tiny_batch(2, 0, s));
    weights.kind = "lora";
    weights.lora_rank = 4;
    weights.lora_alpha = 2;
    for (const auto& site : trainer->lora().sites())
      weights.lora.push_back(LoraTensors{site.module, site.projection, site.adapter->down, site.adapter->up});
    weights.rows_1 = trainer->pivotal().rows(0);
    weights.rows_2 = trainer->pivotal().rows(1);
    weights.step = weights.max_train_steps = 3;
    weights.model = tiny.path();
  }
  at::Tensor unet_output() {
    at::NoGradGuard no_grad;
    at::manual_seed(77);
    const int64_t ctx = model.te1->config().hidden_size + model.te2->config().hidden_size;
    return model.unet->forward(at::randn({1, 4, 16, 16}), at::tensor({400}), at::randn({1, 7, ctx}),
                               at::randn({1, model.unet_config.text_embeds_dim()}),
                               at::tensor({128.f, 128.f, 0.f, 0.f, 128.f, 128.f}).view({1, 6}));
  }
};

TEST(Export, EveryLoraFileGivesTheTrainedUNet) {
  TrainedTiny t;
  testing_util::ScopedTempDir out("export");
  const std::vector<std::string> files = write_export_files(t.weights, out.path(), at::kFloat);
  EXPECT_EQ(files, (std::vector<std::string>{"lora.safetensors", "embeddings.pti", "special_params.json",
                                             "lora_kohya.safetensors", "embeddings_sdxl.safetensors"}));
  const at::Tensor trained = t.unet_output();
  detach_lora(*t.model.unet);
  const at::Tensor base = t.unet_output();
  EXPECT_GT((trained - base).abs().max().item<double>(), 1e-5) << "the LoRA must change the output";
  for (const char* name : {"lora.safetensors", "lora_kohya.safetensors"}) {
    LoraFile f = read_lora_file(out / name, *t.model.unet);
    EXPECT_EQ(f.format, std::string(name) == "lora.safetensors" ? "reference" : "kohya");
    EXPECT_EQ(f.weights.size(), t.weights.lora.size());
    attach_lora_weights(*t.model.unet, f.weights, at::TensorOptions().dtype(at::kFloat));
    EXPECT_LT(testing_util::max_abs_diff(t.unet_output(), trained), 1e-6) << name;
    detach_lora(*t.model.unet);
  }
  SafetensorsFile kohya(out / "lora_kohya.safetensors");
  EXPECT_EQ(kohya.metadata().at("ss_network_dim"), "4");
  EXPECT_EQ(kohya.metadata().at("ss_network_alpha"), "2");
  EXPECT_EQ(read_file(out / "special_params.json"), "{\"TOK\":\"<s0><s1>\"}\n");
  SafetensorsFile pti(out / "embeddings.pti");
  EXPECT_TRUE(at::equal(pti.tensor("text_encoders_1"), t.weights.rows_2));
  SafetensorsFile sdxl(out / "embeddings_sdxl.safetensors");
  EXPECT_TRUE(at::equal(sdxl.tensor("clip_l"), t.weights.rows_1));
}

TEST(Export, TrainerStateRoundTrip) {
  TrainedTiny t;
  testing_util::ScopedTempDir out("export");
  write_trainer_state(out / "state.safetensors", t.trainer->trainable_state(), t.weights);
  SafetensorsFile file(out / "state.safetensors");
  TrainedWeights back = trained_weights_from_state(load_safetensors(out / "state.safetensors", true),
                                                   file.metadata().at("xltune_state"));
  EXPECT_EQ(back.kind, "lora");
  EXPECT_EQ(back.lora_rank, 4);
  EXPECT_EQ(back.lora_alpha, 2);
  ASSERT_EQ(back.lora.size(), t.weights.lora.size());
  // Both orders are the sorted state names; compare by site.
  std::map<std::string, const LoraTensors*> by_site;
  for (const auto& l : t.weights.lora) by_site[l.module + "." + l.projection] = &l;
  for (const auto& l : back.lora) {
    const LoraTensors* want = by_site.at(l.module + "." + l.projection);
    EXPECT_TRUE(at::equal(l.down, want->down) && at::equal(l.up, want->up)) << l.module << "." << l.projection;
  }
  EXPECT_TRUE(at::equal(back.rows_1, t.weights.rows_1));
  EXPECT_THROW(trained_weights_from_state({}, "{\"kind\":\"lora\"}"), Error);
}

TEST(LoraLoading, ForeignAndUnknownKeysAreNamed) {
  TinyModel tiny;
  SdxlModel m = tiny.load();
  testing_util::ScopedTempDir dir("lora_load");
  save_safetensors(dir / "te.safetensors", {{"lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight",
                                             at::zeros({2, 32})}});
  EXPECT_THROW(read_lora_file(dir / "te.safetensors", *m.unet), Error);
  save_safetensors(dir / "odd.safetensors", {{"lora_unet_mid_block_resnets_0_conv1.lora_down.weight", at::zeros({2, 4})}});
  EXPECT_THAT([&] { read_lora_file(dir / "odd.safetensors", *m.unet); },
              ::testing::ThrowsMessage<Error>(::testing::HasSubstr("names no attention projection of this UNet")));
}

}  // namespace
}  // namespace xltune
