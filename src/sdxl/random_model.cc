#include "sdxl/random_model.h"

#include <ATen/ATen.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/check.h"
#include "core/fnv1a.h"
#include "core/keyed_random.h"
#include "core/layers.h"
#include "core/log.h"
#include "core/safetensors.h"
#include "core/splitmix64.h"
#include "models/unet.h"
#include "models/vae.h"
#include "text/clip_text_model.h"

namespace fs = std::filesystem;
using nlohmann::ordered_json;

namespace xltune {

namespace {

ordered_json tiny_unet() {
  return {{"_class_name", "UNet2DConditionModel"},
          {"act_fn", "silu"},
          {"addition_embed_type", "text_time"},
          {"addition_time_embed_dim", 8},
          {"attention_head_dim", {2, 4}},
          {"block_out_channels", {32, 64}},
          {"cross_attention_dim", 64},
          {"down_block_types", {"DownBlock2D", "CrossAttnDownBlock2D"}},
          {"in_channels", 4},
          {"layers_per_block", 1},
          {"norm_num_groups", 8},
          {"out_channels", 4},
          {"projection_class_embeddings_input_dim", 32 + 6 * 8},
          {"sample_size", 16},
          {"transformer_layers_per_block", {1, 1}},
          {"up_block_types", {"CrossAttnUpBlock2D", "UpBlock2D"}},
          {"use_linear_projection", true}};
}

ordered_json small_unet() {
  return {{"_class_name", "UNet2DConditionModel"},
          {"act_fn", "silu"},
          {"addition_embed_type", "text_time"},
          {"addition_time_embed_dim", 256},
          {"attention_head_dim", {1, 3, 6}},
          {"block_out_channels", {96, 192, 384}},
          {"cross_attention_dim", 640},
          {"down_block_types", {"DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"}},
          {"in_channels", 4},
          {"layers_per_block", 2},
          {"norm_num_groups", 32},
          {"out_channels", 4},
          {"projection_class_embeddings_input_dim", 384 + 6 * 256},
          {"sample_size", 64},
          {"transformer_layers_per_block", {1, 1, 2}},
          {"up_block_types", {"CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"}},
          {"use_linear_projection", true}};
}

ordered_json vae(std::vector<int> channels, int layers, int groups) {
  const size_t n = channels.size();
  return {{"_class_name", "AutoencoderKL"},
          {"act_fn", "silu"},
          {"block_out_channels", channels},
          {"down_block_types", std::vector<std::string>(n, "DownEncoderBlock2D")},
          {"force_upcast", true},
          {"in_channels", 3},
          {"latent_channels", 4},
          {"layers_per_block", layers},
          {"norm_num_groups", groups},
          {"out_channels", 3},
          {"sample_size", 128},
          {"scaling_factor", 0.13025},
          {"up_block_types", std::vector<std::string>(n, "UpDecoderBlock2D")}};
}

// As SDXL base's hub files: bos 0 / eos 2 / pad 1 (see Note [Pooling at the first end-of-text token]).
ordered_json clip(bool second, int hidden, int layers, int heads, int mlp, int projection) {
  ordered_json j = {{"architectures", {second ? "CLIPTextModelWithProjection" : "CLIPTextModel"}},
                    {"attention_dropout", 0.0},
                    {"bos_token_id", 0},
                    {"dropout", 0.0},
                    {"eos_token_id", 2},
                    {"hidden_act", second ? "gelu" : "quick_gelu"},
                    {"hidden_size", hidden},
                    {"initializer_factor", 1.0},
                    {"initializer_range", 0.02},
                    {"intermediate_size", mlp},
                    {"layer_norm_eps", 1e-05},
                    {"max_position_embeddings", 77},
                    {"model_type", "clip_text_model"},
                    {"num_attention_heads", heads},
                    {"num_hidden_layers", layers},
                    {"pad_token_id", 1},
                    {"projection_dim", projection},
                    {"torch_dtype", "float32"},
                    {"vocab_size", 49408}};
  return j;
}

// SDXL base's scheduler file.
ordered_json scheduler() {
  return {{"_class_name", "EulerDiscreteScheduler"},
          {"beta_end", 0.012},
          {"beta_schedule", "scaled_linear"},
          {"beta_start", 0.00085},
          {"clip_sample", false},
          {"interpolation_type", "linear"},
          {"num_train_timesteps", 1000},
          {"prediction_type", "epsilon"},
          {"sample_max_value", 1.0},
          {"set_alpha_to_one", false},
          {"skip_prk_steps", true},
          {"steps_offset", 1},
          {"timestep_spacing", "leading"},
          {"trained_betas", nullptr},
          {"use_karras_sigmas", false}};
}

std::string text(const ordered_json& j) { return j.dump(2) + "\n"; }

// Fills every parameter of `module` (Note [Random model weights]).
void randomize(torch::nn::Module& module, const std::string& component, uint64_t seed) {
  at::NoGradGuard no_grad;
  std::set<const void*> norm_weights, norm_biases;
  for (const auto& item : module.named_modules()) {
    torch::nn::Module* m = item.value().get();
    at::Tensor w, b;
    if (auto* gn = dynamic_cast<nn::GroupNormImpl*>(m)) w = gn->weight, b = gn->bias;
    if (auto* ln = dynamic_cast<nn::LayerNormImpl*>(m)) w = ln->weight, b = ln->bias;
    if (w.defined()) norm_weights.insert(w.unsafeGetTensorImpl());
    if (b.defined()) norm_biases.insert(b.unsafeGetTensorImpl());
  }
  const auto f32 = at::TensorOptions().dtype(at::kFloat);
  for (const auto& item : module.named_parameters()) {
    at::Tensor p = item.value();
    const std::string& name = item.key();
    at::Generator g = keyed_generator(seed, fnv1a64(component + "/" + name), 0, DrawKind::kRandomModel);
    at::Tensor v = at::randn(p.sizes(), g, f32);
    const void* key = p.unsafeGetTensorImpl();
    if (norm_weights.count(key)) {
      v = 1 + 0.02 * v;
    } else if (norm_biases.count(key) || p.dim() <= 1 || name.find("embedding.weight") != std::string::npos) {
      v = 0.02 * v;
    } else {
      const int64_t fan_in = p.numel() / p.size(0);
      v = v / std::sqrt(static_cast<double>(fan_in));
    }
    p.copy_(v);
  }
}

}  // namespace

void randomize_module(torch::nn::Module& module, const std::string& component, uint64_t seed) {
  randomize(module, component, seed);
}

namespace {

NamedTensors state_of(torch::nn::Module& module) {
  NamedTensors out;
  for (const auto& item : module.named_parameters()) out.emplace_back(item.key(), item.value().detach());
  return out;
}

void write_component(const std::string& dir, const std::string& config, const std::string& weights_name,
                     torch::nn::Module& module, const std::string& component, uint64_t seed) {
  fs::create_directories(dir);
  randomize(module, component, seed);
  save_safetensors(dir + "/" + weights_name, state_of(module));
  write_file_atomic(dir + "/config.json", config);
}

}  // namespace

ModelConfigSet preset_configs(const std::string& preset) {
  if (preset == "tiny") {
    return {text(tiny_unet()), text(vae({16, 32, 32, 32}, 1, 8)), text(clip(false, 32, 2, 4, 64, 32)),
            text(clip(true, 32, 2, 4, 64, 32)), text(scheduler())};
  }
  if (preset == "small") {
    return {text(small_unet()), text(vae({64, 128, 256, 256}, 1, 32)), text(clip(false, 256, 4, 4, 1024, 256)),
            text(clip(true, 384, 6, 6, 1536, 384)), text(scheduler())};
  }
  XLTUNE_FAIL("--preset '", preset, "': expected tiny or small");
}

ModelConfigSet configs_from_folder(const std::string& dir) {
  ModelConfigSet c;
  c.unet = read_file(dir + "/unet/config.json");
  c.vae = read_file(dir + "/vae/config.json");
  c.text_encoder = read_file(dir + "/text_encoder/config.json");
  c.text_encoder_2 = read_file(dir + "/text_encoder_2/config.json");
  const std::string sched = dir + "/scheduler/scheduler_config.json";
  c.scheduler = fs::is_regular_file(sched) ? read_file(sched) : text(scheduler());
  return c;
}

int64_t write_random_model(const std::string& out, const ModelConfigSet& c, uint64_t seed) {
  // Parse everything first: a bad config leaves nothing behind.
  UNetConfig unet_config = UNetConfig::from_json_text(c.unet, "unet/config.json");
  VaeConfig vae_config = VaeConfig::from_json_text(c.vae, "vae/config.json");
  ClipTextConfig te1_config = ClipTextConfig::from_json_text(c.text_encoder, "text_encoder/config.json");
  ClipTextConfig te2_config = ClipTextConfig::from_json_text(c.text_encoder_2, "text_encoder_2/config.json");
  XLTUNE_CHECK(te2_config.with_projection, "text_encoder_2/config.json: expected CLIPTextModelWithProjection");
  const auto f32 = at::TensorOptions().dtype(at::kFloat);
  fs::create_directories(out);
  int64_t total = 0;
  {
    UNet unet(unet_config, f32);
    write_component(out + "/unet", c.unet, "diffusion_pytorch_model.safetensors", *unet, "unet", seed);
    total += nn::parameter_count(*unet);
  }
  {
    Vae vae(vae_config, f32);
    write_component(out + "/vae", c.vae, "diffusion_pytorch_model.safetensors", *vae, "vae", seed);
    total += nn::parameter_count(*vae);
  }
  {
    ClipTextModel te1(te1_config, f32);
    write_component(out + "/text_encoder", c.text_encoder, "model.safetensors", *te1, "text_encoder", seed);
    total += nn::parameter_count(*te1);
    ClipTextModel te2(te2_config, f32);
    write_component(out + "/text_encoder_2", c.text_encoder_2, "model.safetensors", *te2, "text_encoder_2", seed);
    total += nn::parameter_count(*te2);
  }
  fs::create_directories(out + "/scheduler");
  write_file_atomic(out + "/scheduler/scheduler_config.json", c.scheduler);
  ordered_json index = {{"_class_name", "StableDiffusionXLPipeline"},
                        {"_diffusers_version", "0.42.1"},
                        {"force_zeros_for_empty_prompt", true},
                        {"scheduler", {"diffusers", "EulerDiscreteScheduler"}},
                        {"text_encoder", {"transformers", "CLIPTextModel"}},
                        {"text_encoder_2", {"transformers", "CLIPTextModelWithProjection"}},
                        {"tokenizer", {"transformers", "CLIPTokenizer"}},
                        {"tokenizer_2", {"transformers", "CLIPTokenizer"}},
                        {"unet", {"diffusers", "UNet2DConditionModel"}},
                        {"vae", {"diffusers", "AutoencoderKL"}}};
  // Last: a folder is a model only once model_index.json exists.
  write_file_atomic(out + "/model_index.json", text(index));
  return total;
}

}  // namespace xltune
