// The CLIP text encoders against transformers (tests/reference/make_clip_text_encoders.py):
// every hidden state, the penultimate state, the pooled/projected output and the gradients of
// the new-token rows, in fp32; single-file loading equal to folder loading; the full-size key
// and shape lists and parameter counts; old token rows bit-identical after training steps.
#include "text/clip_text_model.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/optim/adamw.h>

#include <cstdlib>
#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "test_util.h"
#include "core/error.h"
#include "core/safetensors.h"
#include "text/clip_loading.h"
#include "test_paths.h"

namespace xltune {
namespace {

using testing_util::max_abs_diff;
using testing_util::scaled_diff;

std::string clip_dir() { return std::string(xltune::test_paths::testdata_dir()) + "/clip"; }

class ClipTextParity : public ::testing::TestWithParam<std::string> {
 protected:
};

TEST_P(ClipTextParity, HiddenStatesPooledAndNewTokenGradientsMatchTransformers) {
  const std::string dir = clip_dir() + "/encoders/" + GetParam();
  ClipTextModel model = load_clip_text_model(dir);
  SafetensorsFile dump(dir + "/parity.safetensors");
  at::Tensor ids = dump.tensor("input_ids").clone();
  at::Tensor new_rows = dump.tensor("new_rows").clone();

  // Grow by the dump's two rows (their values, not our own init), then compare.
  at::Tensor rows = model->add_new_tokens(new_rows.size(0), at::make_generator<at::CPUGeneratorImpl>(0));
  {
    at::NoGradGuard no_grad;
    rows.copy_(new_rows);
  }
  ClipTextOutput out = model->forward(ids, /*all_hidden_states=*/true);
  double worst = 0;
  for (size_t i = 0; i < out.hidden_states.size(); ++i) {
    worst = std::max(worst, max_abs_diff(out.hidden_states[i], dump.tensor("hidden_states." + std::to_string(i))));
  }
  // Measured on ATen's native, avx2 and default CPU kernels (tests/tolerances), worst over
  // te1_a, te1_b, te2_a, te2_b: hidden states 3.3e-6, last hidden state 2.0e-6, pooled 1.9e-6,
  // text_embeds 1.2e-6, new-row gradients 7.8e-7 of their largest entry.
  EXPECT_MEASURED_BELOW(GetParam() + " hidden states", worst, 1e-5);
  EXPECT_EQ(out.hidden_states.size(), static_cast<size_t>(model->config().num_hidden_layers + 1));
  EXPECT_TRUE(at::equal(out.penultimate, out.hidden_states[out.hidden_states.size() - 2]));
  double d_last = max_abs_diff(out.last_hidden_state, dump.tensor("last_hidden_state"));
  double d_pool = max_abs_diff(out.pooled, dump.tensor("pooled"));
  EXPECT_MEASURED_BELOW(GetParam() + " last hidden state", d_last, 1e-5);
  EXPECT_MEASURED_BELOW(GetParam() + " pooled", d_pool, 1e-5);
  at::Tensor final_pooled = out.pooled;
  if (model->config().with_projection) {
    double d_proj = max_abs_diff(out.text_embeds, dump.tensor("text_embeds"));
    EXPECT_MEASURED_BELOW(GetParam() + " text_embeds", d_proj, 1e-5);
    worst = std::max(worst, d_proj);
    final_pooled = out.text_embeds;
  }
  worst = std::max({worst, d_last, d_pool});

  at::Tensor loss = (out.penultimate * dump.tensor("R_pen")).sum() + (final_pooled * dump.tensor("R_pool")).sum();
  loss.backward();
  // The gradient sums 3 x 77 positions of random weights: entries reach a few hundred, where
  // one fp32 ulp is 3e-5. So the bound is 1e-5 relative to the gradient's largest entry.
  at::Tensor want_grad = dump.tensor("grad_new_rows");
  double d_grad = max_abs_diff(rows.grad(), want_grad);
  double grad_scale = std::max(1.0, want_grad.abs().max().item<double>());
  EXPECT_MEASURED_BELOW(GetParam() + " new-row gradients (scaled)", d_grad / grad_scale, 4e-6);
  EXPECT_FALSE(model->token_embedding->weight.grad().defined()) << "the old table must get no gradient";
  std::printf("%s: max |diff| outputs %.3g; new-row gradients %.3g (relative %.3g)\n", GetParam().c_str(), worst,
              d_grad, d_grad / grad_scale);
}

INSTANTIATE_TEST_SUITE_P(Configs, ClipTextParity, ::testing::Values("te1_a", "te1_b", "te2_a", "te2_b"));

TEST(ClipTextSingleFile, SameOutputsAsTheFolders) {
  const std::string dir = clip_dir();
  ClipTextModel te1 = load_clip_text_model(dir + "/encoders/te1_a");
  ClipTextModel te2 = load_clip_text_model(dir + "/encoders/te2_a");
  SdxlTextEncoders single = load_sdxl_text_encoders_from_single_file(
      dir + "/encoders/single_file_text.safetensors", {}, te1->config(), te2->config());
  at::Tensor ids = SafetensorsFile(dir + "/encoders/te1_a/parity.safetensors").tensor("input_ids").clamp_max(49407);
  at::NoGradGuard no_grad;
  EXPECT_TRUE(at::equal(te1->forward(ids).penultimate, single.te1->forward(ids).penultimate));
  ClipTextOutput a = te2->forward(ids), b = single.te2->forward(ids);
  EXPECT_TRUE(at::equal(a.penultimate, b.penultimate));
  EXPECT_TRUE(at::equal(a.text_embeds, b.text_embeds));
}

TEST(ClipTextSingleFile, InfersConfigsFromShapesWhenHeadsAre64Wide) {
  ClipTextConfig c;
  c.hidden_size = 128;
  c.num_attention_heads = 2;
  c.intermediate_size = 256;
  c.num_hidden_layers = 3;
  c.vocab_size = 100;
  c.max_position_embeddings = 20;
  c.hidden_act = "gelu";
  c.with_projection = true;
  c.projection_dim = 32;
  ClipTextModel m(c, at::TensorOptions().device(at::kMeta));
  TensorMap map;
  for (const auto& p : m->named_parameters())
    map[p.key()] = TensorRef{std::vector<int64_t>(p.value().sizes().begin(), p.value().sizes().end()), nullptr, p.key()};
  ClipTextConfig inferred = infer_clip_text_config(map, /*with_projection=*/true, "test");
  EXPECT_EQ(inferred.hidden_size, 128);
  EXPECT_EQ(inferred.num_attention_heads, 2);
  EXPECT_EQ(inferred.intermediate_size, 256);
  EXPECT_EQ(inferred.num_hidden_layers, 3);
  EXPECT_EQ(inferred.vocab_size, 100);
  EXPECT_EQ(inferred.max_position_embeddings, 20);
  EXPECT_EQ(inferred.projection_dim, 32);
  EXPECT_EQ(inferred.hidden_act, "gelu");
  map.erase("text_model.encoder.layers.0.mlp.fc1.weight");
  EXPECT_THROW(infer_clip_text_config(map, true, "test"), Error);
}

TEST(ClipTextFullSize, KeysShapesAndParameterCountsEqualTransformers) {
  const std::string dir = clip_dir();
  nlohmann::json want = nlohmann::json::parse(read_file(dir + "/encoders/full_size_keys.json"));
  for (const char* name : {"text_encoder", "text_encoder_2"}) {
    ClipTextConfig config = ClipTextConfig::from_json_file(dir + "/encoders/full_size/" + name + "/config.json");
    ClipTextModel model(config, at::TensorOptions().device(at::kMeta));  // no memory for weights
    std::map<std::string, std::vector<int64_t>> ours, theirs;
    for (const auto& p : model->named_parameters())
      ours[p.key()] = std::vector<int64_t>(p.value().sizes().begin(), p.value().sizes().end());
    for (const auto& t : want[name]["tensors"]) theirs[t[0].get<std::string>()] = t[1].get<std::vector<int64_t>>();
    // transformers >= 5.6 may save CLIPTextModel without the "text_model." prefix; compare with it.
    std::map<std::string, std::vector<int64_t>> theirs_prefixed;
    for (const auto& [k, s] : theirs) {
      bool prefixed = k.rfind("text_model.", 0) == 0 || k == "text_projection.weight";
      theirs_prefixed[prefixed ? k : "text_model." + k] = s;
    }
    EXPECT_EQ(ours, theirs_prefixed) << name;
    EXPECT_EQ(nn::parameter_count(*model), want[name]["parameters"].get<int64_t>()) << name;
  }
  EXPECT_EQ(want["text_encoder"]["parameters"].get<int64_t>(), 123060480);
  EXPECT_EQ(want["text_encoder_2"]["parameters"].get<int64_t>(), 694659840);
}

TEST(ClipTextNewTokens, OldRowsStayBitIdenticalThroughTraining) {
  const std::string dir = clip_dir();
  ClipTextModel model = load_clip_text_model(dir + "/encoders/te2_a");
  for (auto& p : model->parameters()) p.requires_grad_(false);
  at::Tensor before = model->token_embedding->weight.clone();
  at::Tensor rows = model->add_new_tokens(2, at::make_generator<at::CPUGeneratorImpl>(42));
  // Initialised as the reference: randn from the seed times the old table's std.
  at::Tensor expected = at::randn({2, before.size(1)}, at::make_generator<at::CPUGeneratorImpl>(42)) * before.std();
  EXPECT_TRUE(at::allclose(rows, expected));
  torch::optim::AdamW optimizer({rows}, torch::optim::AdamWOptions(1e-2));
  at::Tensor ids = at::tensor({49406, 320, 49408, 49409, 2368, 49407}, at::kLong).unsqueeze(0);
  at::Tensor start_rows = rows.detach().clone();
  for (int step = 0; step < 5; ++step) {
    optimizer.zero_grad();
    model->forward(ids).text_embeds.square().sum().backward();
    optimizer.step();
  }
  EXPECT_TRUE(at::equal(model->token_embedding->weight, before)) << "old rows changed";
  EXPECT_FALSE(at::equal(rows, start_rows)) << "new rows did not train";
}

TEST(ClipTextConfigFile, BadFieldsAreNamed) {
  EXPECT_THAT(
      [] {
        ClipTextConfig::from_json_text(R"({"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2,
                                           "num_attention_heads": 5})",
                                       "cfg.json");
      },
      ::testing::ThrowsMessage<Error>(::testing::HasSubstr("not a multiple of num_attention_heads")));
  EXPECT_THROW(ClipTextConfig::from_json_text(R"({"hidden_size": 32})", "cfg.json"), Error);
  EXPECT_THROW(ClipTextConfig::from_json_text(R"({"hidden_size": 32, "intermediate_size": 37,
      "num_hidden_layers": 2, "num_attention_heads": 4, "hidden_act": "relu"})", "cfg.json"), Error);
}

TEST(ClipTextLoading, WrongShapesAndMissingTensorsAreNamed) {
  const std::string dir = clip_dir();
  // te1_a's weights under te1_b's config: every mismatch is reported by name.
  ClipTextModel other(ClipTextConfig::from_json_file(dir + "/encoders/te1_b/config.json"), at::TensorOptions());
  SafetensorsSet set(find_safetensors_weights(dir + "/encoders/te1_a"));
  EXPECT_THAT([&] { load_module(*other, with_text_model_prefix(tensors_under(set, "")), "te1_a"); },
              ::testing::ThrowsMessage<Error>(::testing::AllOf(
                  ::testing::HasSubstr("wrong shape"),
                  ::testing::HasSubstr("token_embedding.weight [49408, 32] (expected [49408, 48])"))));
}

}  // namespace
}  // namespace xltune
