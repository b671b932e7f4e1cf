#include "prep/clipseg.h"

#include <ATen/ATen.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/check.h"
#include "prep/hub_config.h"

namespace xltune {
namespace {

// transformers' defaults of CLIPSegTextConfig / CLIPSegVisionConfig under what the file says.
ClipTextConfig tower_config(const nlohmann::json& file, bool text, int64_t projection_dim, const std::string& source) {
  nlohmann::json j = text ? nlohmann::json{{"vocab_size", 49408}, {"hidden_size", 512}, {"intermediate_size", 2048},
                                           {"num_hidden_layers", 12}, {"num_attention_heads", 8},
                                           {"max_position_embeddings", 77}, {"hidden_act", "quick_gelu"},
                                           {"layer_norm_eps", 1e-5}}
                          : nlohmann::json{{"hidden_size", 768}, {"intermediate_size", 3072}, {"num_hidden_layers", 12},
                                           {"num_attention_heads", 12}, {"hidden_act", "quick_gelu"},
                                           {"layer_norm_eps", 1e-5}};
  if (file.is_object())
    for (auto it = file.begin(); it != file.end(); ++it)
      if (!it.value().is_null()) j[it.key()] = it.value();
  j.erase("architectures");
  ClipTextConfig c = ClipTextConfig::from_json_text(j.dump(), source + (text ? " (text_config)" : " (vision_config)"));
  c.projection_dim = projection_dim;
  c.with_projection = text;
  c.causal = text;
  return c;
}

// ConvTranspose2d's weight [in, out, k, k] and bias, registered as `name`.weight/.bias of `parent`.
void add_up(torch::nn::Module& parent, const std::string& name, int64_t in, int64_t out, int64_t k,
            const at::TensorOptions& o, std::vector<at::Tensor>& weights, std::vector<at::Tensor>& biases) {
  auto holder = std::make_shared<nn::Container>();
  weights.push_back(holder->register_parameter("weight", at::empty({in, out, k, k}, o)));
  biases.push_back(holder->register_parameter("bias", at::empty({out}, o)));
  parent.register_module(name, holder);
}

}  // namespace

ClipSegConfig ClipSegConfig::from_json_text(const std::string& text, const std::string& source) {
  const nlohmann::json j = parse_config_object(text, source);
  ClipSegConfig c;
  c.projection_dim = config_int(j, "projection_dim", 512, source);
  c.text = tower_config(j.value("text_config", nlohmann::json()), true, c.projection_dim, source);
  const nlohmann::json v = j.value("vision_config", nlohmann::json::object());
  c.vision = tower_config(v, false, c.projection_dim, source);
  c.image_size = config_int(v, "image_size", 224, source);
  c.patch_size = config_int(v, "patch_size", 32, source);
  c.num_channels = config_int(v, "num_channels", 3, source);
  c.reduce_dim = config_int(j, "reduce_dim", 64, source);
  if (j.contains("extract_layers") && !j["extract_layers"].is_null()) {
    XLTUNE_CHECK(j["extract_layers"].is_array() && !j["extract_layers"].empty(), source,
                 ": \"extract_layers\": expected a list of layer indices");
    c.extract_layers.clear();
    for (const auto& e : j["extract_layers"]) {
      XLTUNE_CHECK(e.is_number_integer() && e.get<int64_t>() >= 0 && e.get<int64_t>() < c.vision.num_hidden_layers,
                   source, ": \"extract_layers\": expected indices below ", c.vision.num_hidden_layers);
      c.extract_layers.push_back(e.get<int64_t>());
    }
  }
  c.conditional_layer = config_int(j, "conditional_layer", 0, source);
  c.decoder_num_attention_heads = config_int(j, "decoder_num_attention_heads", 4, source);
  c.decoder_intermediate_size = config_int(j, "decoder_intermediate_size", 2048, source);
  c.use_complex_transposed_convolution = j.value("use_complex_transposed_convolution", false);
  XLTUNE_CHECK(c.reduce_dim % c.decoder_num_attention_heads == 0, source, ": reduce_dim ", c.reduce_dim,
               " is not a multiple of decoder_num_attention_heads ", c.decoder_num_attention_heads);
  XLTUNE_CHECK(c.patch_size >= 1 && c.image_size % c.patch_size == 0, source, ": image_size ", c.image_size,
               " is not a multiple of patch_size ", c.patch_size);
  XLTUNE_CHECK(!c.use_complex_transposed_convolution || c.patch_size % 4 == 0, source,
               ": the complex transposed convolution needs a patch size divisible by 4, got ", c.patch_size);
  return c;
}

ClipSegDecoderLayerImpl::ClipSegDecoderLayerImpl(const ClipTextConfig& c, const at::TensorOptions& o) {
  self_attn = register_module("self_attn", ClipAttention(c, o));
  layer_norm1 = register_module("layer_norm1", nn::LayerNorm(c.hidden_size, c.layer_norm_eps, o));
  mlp = register_module("mlp", ClipMlp(c, o));
  layer_norm2 = register_module("layer_norm2", nn::LayerNorm(c.hidden_size, c.layer_norm_eps, o));
}

at::Tensor ClipSegDecoderLayerImpl::forward(const at::Tensor& x) {
  at::Tensor h = layer_norm1(x + self_attn(x));
  return layer_norm2(h + mlp(h));
}

ClipSegImpl::ClipSegImpl(const ClipSegConfig& c, const at::TensorOptions& o) : config_(c) {
  clip = register_module("clip", ClipTextModel(c.text, o));
  auto vision = clip->register_module("vision_model", std::make_shared<nn::Container>());
  auto embeddings = vision->register_module("embeddings", std::make_shared<nn::Container>());
  class_embedding = embeddings->register_parameter("class_embedding", at::empty({c.vision.hidden_size}, o));
  patch_embedding = embeddings->register_module(
      "patch_embedding", nn::Conv2d(c.num_channels, c.vision.hidden_size, c.patch_size, c.patch_size, 0, o, false));
  const int64_t grid = c.image_size / c.patch_size;
  position_embedding =
      embeddings->register_module("position_embedding", nn::Embedding(grid * grid + 1, c.vision.hidden_size, o));
  pre_layrnorm = vision->register_module("pre_layrnorm", nn::LayerNorm(c.vision.hidden_size, c.vision.layer_norm_eps, o));
  auto encoder = vision->register_module("encoder", std::make_shared<nn::Container>());
  torch::nn::ModuleList layers;
  for (int64_t i = 0; i < c.vision.num_hidden_layers; ++i) {
    vision_layers.push_back(ClipEncoderLayer(c.vision, o));
    layers->push_back(vision_layers.back());
  }
  encoder->register_module("layers", layers);
  post_layernorm =
      vision->register_module("post_layernorm", nn::LayerNorm(c.vision.hidden_size, c.vision.layer_norm_eps, o));
  clip->register_module("visual_projection", nn::Linear(c.vision.hidden_size, c.projection_dim, false, o));
  clip->register_parameter("logit_scale", at::empty({}, o));

  auto decoder = register_module("decoder", std::make_shared<nn::Container>());
  film_mul = decoder->register_module("film_mul", nn::Linear(c.projection_dim, c.reduce_dim, true, o));
  film_add = decoder->register_module("film_add", nn::Linear(c.projection_dim, c.reduce_dim, true, o));
  auto up = std::make_shared<nn::Container>();
  if (c.use_complex_transposed_convolution) {
    auto conv = std::make_shared<nn::Container>();
    up_weights.push_back(conv->register_parameter("weight", at::empty({c.reduce_dim, c.reduce_dim, 3, 3}, o)));
    up_biases.push_back(conv->register_parameter("bias", at::empty({c.reduce_dim}, o)));
    up->register_module("0", conv);
    const int64_t k = c.patch_size / 4;
    add_up(*up, "2", c.reduce_dim, c.reduce_dim / 2, k, o, up_weights, up_biases);
    add_up(*up, "4", c.reduce_dim / 2, 1, k, o, up_weights, up_biases);
    decoder->register_module("transposed_convolution", up);
  } else {
    add_up(*decoder, "transposed_convolution", c.reduce_dim, 1, c.patch_size, o, up_weights, up_biases);
  }
  torch::nn::ModuleList reduce_list;
  for (size_t i = 0; i < c.extract_layers.size(); ++i) {
    reduces.push_back(nn::Linear(c.vision.hidden_size, c.reduce_dim, true, o));
    reduce_list->push_back(reduces.back());
  }
  decoder->register_module("reduces", reduce_list);
  ClipTextConfig dc = c.vision;
  dc.hidden_size = c.reduce_dim;
  dc.num_attention_heads = c.decoder_num_attention_heads;
  dc.intermediate_size = c.decoder_intermediate_size;
  dc.hidden_act = "relu";
  dc.causal = false;
  torch::nn::ModuleList decoder_list;
  for (size_t i = 0; i < c.extract_layers.size(); ++i) {
    decoder_layers.push_back(ClipSegDecoderLayer(dc, o));
    decoder_list->push_back(decoder_layers.back());
  }
  decoder->register_module("layers", decoder_list);
}

std::vector<at::Tensor> ClipSegImpl::vision_activations(const at::Tensor& pixels) {
  const int64_t b = pixels.size(0), h = pixels.size(2), w = pixels.size(3);
  at::Tensor patches = patch_embedding(pixels.to(patch_embedding->weight.scalar_type())).flatten(2).transpose(1, 2);
  at::Tensor x = at::cat({class_embedding.expand({b, 1, -1}), patches}, 1);
  // Position embeddings: as trained, or bicubically resized to this grid (interpolate_pos_encoding).
  at::Tensor pos = position_embedding->weight.unsqueeze(0);
  const int64_t trained = pos.size(1) - 1, now = x.size(1) - 1;
  if (now != trained || h != w) {
    const int64_t side = static_cast<int64_t>(std::lround(std::sqrt(static_cast<double>(trained))));
    const int64_t dim = pos.size(2);
    at::Tensor grid = pos.slice(1, 1).reshape({1, side, side, dim}).permute({0, 3, 1, 2});
    grid = at::upsample_bicubic2d(grid, {h / config_.patch_size, w / config_.patch_size}, /*align_corners=*/false);
    pos = at::cat({pos.slice(1, 0, 1), grid.permute({0, 2, 3, 1}).reshape({1, -1, dim})}, 1);
  }
  x = pre_layrnorm(x + pos);
  // Layers past the last extracted one feed nothing the decoder reads.
  const int64_t last = *std::max_element(config_.extract_layers.begin(), config_.extract_layers.end());
  std::map<int64_t, at::Tensor> kept;
  for (int64_t i = 0; i <= last; ++i) {
    x = vision_layers[static_cast<size_t>(i)]->forward(x);
    if (std::count(config_.extract_layers.begin(), config_.extract_layers.end(), i)) kept[i] = x;
  }
  std::vector<at::Tensor> out;
  for (int64_t i : config_.extract_layers) out.push_back(kept.at(i));
  return out;
}

at::Tensor ClipSegImpl::conditional_embeddings(const at::Tensor& ids) { return clip->forward(ids).text_embeds; }

at::Tensor ClipSegImpl::forward(const at::Tensor& pixels, const at::Tensor& ids) {
  XLTUNE_CHECK(pixels.dim() == 4 && pixels.size(0) == ids.size(0), "CLIPSeg: expected as many images as prompts, got ",
               pixels.sizes(), " and ", ids.sizes());
  const std::vector<at::Tensor> activations = vision_activations(pixels);
  const at::Tensor cond = conditional_embeddings(ids);
  at::Tensor out;
  for (size_t k = 0; k < activations.size(); ++k) {
    const at::Tensor& a = activations[activations.size() - 1 - k];  // deepest first
    out = out.defined() ? reduces[k](a) + out : reduces[k](a);
    if (static_cast<int64_t>(k) == config_.conditional_layer) {
      out = (film_mul(cond) * out.permute({1, 0, 2}) + film_add(cond)).permute({1, 0, 2});
    }
    out = decoder_layers[k]->forward(out);
  }
  out = out.slice(1, 1).transpose(1, 2);  // drop the class token: [B, reduce_dim, patches]
  const int64_t side = static_cast<int64_t>(std::lround(std::sqrt(static_cast<double>(out.size(2)))));
  XLTUNE_CHECK(side * side == out.size(2), "CLIPSeg: the image must be square, got ", pixels.sizes());
  at::Tensor x = out.reshape({pixels.size(0), out.size(1), side, side});
  if (config_.use_complex_transposed_convolution) {
    x = at::relu(at::conv2d(x, up_weights[0], up_biases[0], 1, 1));
    x = at::relu(at::conv_transpose2d(x, up_weights[1], up_biases[1], up_weights[1].size(2)));
    x = at::conv_transpose2d(x, up_weights[2], up_biases[2], up_weights[2].size(2));
  } else {
    x = at::conv_transpose2d(x, up_weights[0], up_biases[0], up_weights[0].size(2));
  }
  return x.squeeze(1);
}

ClipSeg load_clipseg(const std::string& dir, const at::TensorOptions& options) {
  const std::string weights = hub_model_weights(dir, "--clipseg_model", "CIDAS/clipseg-rd64-refined");
  ClipSeg model(ClipSegConfig::from_json_text(read_file(dir + "/config.json"), dir + "/config.json"), options);
  load_hub_weights(*model, weights, "CLIPSeg " + dir);
  return model;
}

std::vector<uint8_t> clipseg_mask_from_logits(const at::Tensor& logits, double temperature) {
  XLTUNE_CHECK(logits.dim() == 3 && logits.size(0) == 2, "CLIPSeg mask: expected the logits of [prompt, \"\"]");
  at::Tensor p = at::softmax(logits.to(at::kFloat).cpu() / temperature, 0)[0];
  p = (p + 0.01).clamp_(0, 1);
  p = 255 * p / p.max();
  // PIL's F -> L: clipped to 0..255 and truncated.
  at::Tensor m = p.clamp(0, 255).trunc().to(at::kByte).contiguous();
  return std::vector<uint8_t>(m.data_ptr<uint8_t>(), m.data_ptr<uint8_t>() + m.numel());
}

}  // namespace xltune
