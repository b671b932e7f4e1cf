#include "prep/blip.h"

#include <ATen/ATen.h>
#include <torch/torch.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/check.h"
#include "prep/hub_config.h"

namespace xltune {
namespace {

using Json = nlohmann::json;

std::string get_act(const Json& j, const std::string& fallback, const std::string& source) {
  if (!j.contains("hidden_act") || j["hidden_act"].is_null()) return fallback;
  XLTUNE_CHECK(j["hidden_act"].is_string(), source, ": \"hidden_act\": expected a string");
  const std::string a = j["hidden_act"].get<std::string>();
  XLTUNE_CHECK(a == "gelu" || a == "gelu_new" || a == "gelu_pytorch_tanh" || a == "quick_gelu" || a == "relu", source,
               ": \"hidden_act\" '", a, "': expected gelu, gelu_new, gelu_pytorch_tanh, quick_gelu or relu");
  return a;
}

at::Tensor activation(const at::Tensor& x, const std::string& act) {
  if (act == "gelu") return at::gelu(x);
  if (act == "quick_gelu") return x * at::sigmoid(1.702 * x);
  if (act == "relu") return at::relu(x);
  return at::gelu(x, "tanh");  // gelu_new, gelu_pytorch_tanh
}

// softmax(q kᵀ / sqrt(d) + mask) v as BERT's and BLIP's code computes it (Note [BLIP's
// decoding cache]). q [B, h, T, d], k/v [B, h, S, d]; mask [T, S] additive or undefined.
at::Tensor attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask) {
  at::Tensor scores = at::matmul(q, k.transpose(-1, -2)) / std::sqrt(static_cast<double>(q.size(-1)));
  if (mask.defined()) scores = scores + mask;
  return at::matmul(at::softmax(scores, -1), v);
}

// [B, T, h * d] <-> [B, h, T, d]
at::Tensor split_heads(const at::Tensor& x, int64_t heads) {
  return x.view({x.size(0), x.size(1), heads, -1}).transpose(1, 2);
}
at::Tensor merge_heads(const at::Tensor& x) {
  return x.permute({0, 2, 1, 3}).contiguous().view({x.size(0), x.size(2), -1});
}

std::shared_ptr<nn::Container> child(torch::nn::Module& parent, const std::string& name) {
  return parent.register_module(name, std::make_shared<nn::Container>());
}

BlipImpl::BertAttention make_attention(torch::nn::Module& parent, const std::string& name, int64_t hidden,
                                       int64_t kv_in, double eps, const at::TensorOptions& o) {
  BlipImpl::BertAttention a;
  auto top = child(parent, name);
  auto self = child(*top, "self");
  a.query = self->register_module("query", nn::Linear(hidden, hidden, true, o));
  a.key = self->register_module("key", nn::Linear(kv_in, hidden, true, o));
  a.value = self->register_module("value", nn::Linear(kv_in, hidden, true, o));
  auto out = child(*top, "output");
  a.dense = out->register_module("dense", nn::Linear(hidden, hidden, true, o));
  a.layer_norm = out->register_module("LayerNorm", nn::LayerNorm(hidden, eps, o));
  return a;
}

}  // namespace

BlipConfig BlipConfig::from_json_text(const std::string& text, const std::string& source) {
  const Json j = parse_config_object(text, source);
  BlipConfig c;
  const Json v = j.value("vision_config", Json::object());
  const std::string vs = source + " (vision_config)";
  XLTUNE_CHECK(v.is_object(), vs, ": expected an object");
  BlipVisionConfig& vc = c.vision;
  vc.hidden_size = config_int(v, "hidden_size", vc.hidden_size, vs);
  vc.intermediate_size = config_int(v, "intermediate_size", vc.intermediate_size, vs);
  vc.num_hidden_layers = config_int(v, "num_hidden_layers", vc.num_hidden_layers, vs);
  vc.num_attention_heads = config_int(v, "num_attention_heads", vc.num_attention_heads, vs);
  vc.image_size = config_int(v, "image_size", vc.image_size, vs);
  vc.patch_size = config_int(v, "patch_size", vc.patch_size, vs);
  vc.hidden_act = get_act(v, vc.hidden_act, vs);
  vc.layer_norm_eps = config_number(v, "layer_norm_eps", vc.layer_norm_eps, vs);
  XLTUNE_CHECK(vc.hidden_size > 0 && vc.num_attention_heads > 0 && vc.hidden_size % vc.num_attention_heads == 0, vs,
               ": hidden_size ", vc.hidden_size, " is not a multiple of num_attention_heads ", vc.num_attention_heads);
  XLTUNE_CHECK(vc.patch_size > 0 && vc.image_size % vc.patch_size == 0, vs, ": image_size ", vc.image_size,
               " is not a multiple of patch_size ", vc.patch_size);

  const Json t = j.value("text_config", Json::object());
  const std::string ts = source + " (text_config)";
  XLTUNE_CHECK(t.is_object(), ts, ": expected an object");
  BlipTextConfig& tc = c.text;
  tc.vocab_size = config_int(t, "vocab_size", tc.vocab_size, ts);
  tc.hidden_size = config_int(t, "hidden_size", tc.hidden_size, ts);
  tc.encoder_hidden_size = vc.hidden_size;  // BlipConfig.__post_init__
  tc.intermediate_size = config_int(t, "intermediate_size", tc.intermediate_size, ts);
  tc.num_hidden_layers = config_int(t, "num_hidden_layers", tc.num_hidden_layers, ts);
  tc.num_attention_heads = config_int(t, "num_attention_heads", tc.num_attention_heads, ts);
  tc.max_position_embeddings = config_int(t, "max_position_embeddings", tc.max_position_embeddings, ts);
  tc.hidden_act = get_act(t, tc.hidden_act, ts);
  tc.layer_norm_eps = config_number(t, "layer_norm_eps", tc.layer_norm_eps, ts);
  tc.bos_token_id = config_int(t, "bos_token_id", tc.bos_token_id, ts);
  tc.pad_token_id = config_int(t, "pad_token_id", tc.pad_token_id, ts);
  tc.sep_token_id = config_int(t, "sep_token_id", tc.sep_token_id, ts);
  XLTUNE_CHECK(tc.hidden_size > 0 && tc.num_attention_heads > 0 && tc.hidden_size % tc.num_attention_heads == 0, ts,
               ": hidden_size ", tc.hidden_size, " is not a multiple of num_attention_heads ", tc.num_attention_heads);
  for (int64_t id : {tc.bos_token_id, tc.pad_token_id, tc.sep_token_id})
    XLTUNE_CHECK(id >= 0 && id < tc.vocab_size, ts, ": token id ", id, " is outside the vocabulary of ", tc.vocab_size);
  return c;
}

void BlipDecoderCache::select_rows(const at::Tensor& rows) {
  for (auto* list : {&self_keys, &self_values, &cross_keys, &cross_values})
    for (auto& t : *list)
      if (t.defined()) t = t.index_select(0, rows.to(t.device()));
}

BlipImpl::BlipImpl(const BlipConfig& c, const at::TensorOptions& o) : config_(c) {
  const BlipVisionConfig& v = c.vision;
  auto vision = child(*this, "vision_model");
  auto embeddings = child(*vision, "embeddings");
  class_embedding = embeddings->register_parameter("class_embedding", at::empty({1, 1, v.hidden_size}, o));
  patch_embedding =
      embeddings->register_module("patch_embedding", nn::Conv2d(3, v.hidden_size, v.patch_size, v.patch_size, 0, o));
  const int64_t grid = v.image_size / v.patch_size;
  position_embedding =
      embeddings->register_parameter("position_embedding", at::empty({1, grid * grid + 1, v.hidden_size}, o));
  auto encoder = child(*vision, "encoder");
  torch::nn::ModuleList layers;
  for (int64_t i = 0; i < v.num_hidden_layers; ++i) {
    auto layer = std::make_shared<nn::Container>();
    VisionLayer l;
    l.layer_norm1 = layer->register_module("layer_norm1", nn::LayerNorm(v.hidden_size, v.layer_norm_eps, o));
    auto attn = child(*layer, "self_attn");
    l.qkv = attn->register_module("qkv", nn::Linear(v.hidden_size, 3 * v.hidden_size, true, o));
    l.projection = attn->register_module("projection", nn::Linear(v.hidden_size, v.hidden_size, true, o));
    l.layer_norm2 = layer->register_module("layer_norm2", nn::LayerNorm(v.hidden_size, v.layer_norm_eps, o));
    auto mlp = child(*layer, "mlp");
    l.fc1 = mlp->register_module("fc1", nn::Linear(v.hidden_size, v.intermediate_size, true, o));
    l.fc2 = mlp->register_module("fc2", nn::Linear(v.intermediate_size, v.hidden_size, true, o));
    vision_layers.push_back(l);
    layers->push_back(layer);
  }
  encoder->register_module("layers", layers);
  post_layernorm = vision->register_module("post_layernorm", nn::LayerNorm(v.hidden_size, v.layer_norm_eps, o));

  const BlipTextConfig& t = c.text;
  auto decoder = child(*this, "text_decoder");
  auto bert = child(*decoder, "bert");
  auto temb = child(*bert, "embeddings");
  word_embeddings = temb->register_module("word_embeddings", nn::Embedding(t.vocab_size, t.hidden_size, o));
  position_embeddings =
      temb->register_module("position_embeddings", nn::Embedding(t.max_position_embeddings, t.hidden_size, o));
  embeddings_norm = temb->register_module("LayerNorm", nn::LayerNorm(t.hidden_size, t.layer_norm_eps, o));
  auto tenc = child(*bert, "encoder");
  torch::nn::ModuleList tlayers;
  for (int64_t i = 0; i < t.num_hidden_layers; ++i) {
    auto layer = std::make_shared<nn::Container>();
    TextLayer l;
    l.self_attention = make_attention(*layer, "attention", t.hidden_size, t.hidden_size, t.layer_norm_eps, o);
    l.cross_attention =
        make_attention(*layer, "crossattention", t.hidden_size, t.encoder_hidden_size, t.layer_norm_eps, o);
    l.intermediate = child(*layer, "intermediate")
                         ->register_module("dense", nn::Linear(t.hidden_size, t.intermediate_size, true, o));
    auto out = child(*layer, "output");
    l.output = out->register_module("dense", nn::Linear(t.intermediate_size, t.hidden_size, true, o));
    l.output_norm = out->register_module("LayerNorm", nn::LayerNorm(t.hidden_size, t.layer_norm_eps, o));
    text_layers.push_back(l);
    tlayers->push_back(layer);
  }
  tenc->register_module("layer", tlayers);
  auto predictions = child(*child(*decoder, "cls"), "predictions");
  output_bias = predictions->register_parameter("bias", at::empty({t.vocab_size}, o));
  auto tr = child(*predictions, "transform");
  transform = tr->register_module("dense", nn::Linear(t.hidden_size, t.hidden_size, true, o));
  transform_norm = tr->register_module("LayerNorm", nn::LayerNorm(t.hidden_size, t.layer_norm_eps, o));
}

at::Tensor BlipImpl::image_embeds(const at::Tensor& pixels) {
  const BlipVisionConfig& v = config_.vision;
  XLTUNE_CHECK(pixels.dim() == 4 && pixels.size(1) == 3 && pixels.size(2) == v.image_size &&
                   pixels.size(3) == v.image_size,
               "BLIP: expected pixels [B, 3, ", v.image_size, ", ", v.image_size, "], got ", pixels.sizes());
  const int64_t b = pixels.size(0);
  at::Tensor patches = patch_embedding(pixels.to(patch_embedding->weight.scalar_type())).flatten(2).transpose(1, 2);
  at::Tensor x = at::cat({class_embedding.expand({b, 1, -1}), patches}, 1) + position_embedding;
  for (VisionLayer& l : vision_layers) {
    at::Tensor h = l.layer_norm1(x);
    at::Tensor qkv = l.qkv(h).view({b, h.size(1), 3, v.num_attention_heads, -1}).permute({2, 0, 3, 1, 4});
    // BLIP multiplies by head_dim^-0.5 where BERT divides by sqrt(head_dim).
    at::Tensor scores = at::matmul(qkv[0], qkv[1].transpose(-1, -2)) *
                        std::pow(static_cast<double>(v.hidden_size / v.num_attention_heads), -0.5);
    at::Tensor context = at::matmul(at::softmax(scores, -1), qkv[2]).permute({0, 2, 1, 3}).reshape(h.sizes());
    x = x + l.projection(context);
    x = x + l.fc2(activation(l.fc1(l.layer_norm2(x)), v.hidden_act));
  }
  return post_layernorm(x);
}

BlipDecoderCache BlipImpl::start_decoding(const at::Tensor& image_embeds) {
  BlipDecoderCache cache;
  const int64_t heads = config_.text.num_attention_heads;
  for (TextLayer& l : text_layers) {
    cache.self_keys.emplace_back();
    cache.self_values.emplace_back();
    cache.cross_keys.push_back(split_heads(l.cross_attention.key(image_embeds), heads));
    cache.cross_values.push_back(split_heads(l.cross_attention.value(image_embeds), heads));
  }
  return cache;
}

at::Tensor BlipImpl::decode(const at::Tensor& ids, BlipDecoderCache& cache) {
  const BlipTextConfig& t = config_.text;
  const int64_t past = cache.length(), n = ids.size(1);
  XLTUNE_CHECK(past + n <= t.max_position_embeddings, "BLIP: a caption of ", past + n,
               " tokens is longer than the decoder's ", t.max_position_embeddings, " positions");
  XLTUNE_CHECK(cache.cross_keys.size() == text_layers.size() && cache.cross_keys[0].size(0) == ids.size(0),
               "BLIP: the cache has ", cache.cross_keys.empty() ? 0 : cache.cross_keys[0].size(0), " rows, the ids ",
               ids.size(0));
  const at::Tensor positions = at::arange(past, past + n, ids.options().dtype(at::kLong));
  at::Tensor x = embeddings_norm(word_embeddings(ids) + position_embeddings(positions).unsqueeze(0));
  // Causal over the new tokens; every cached token is visible. A single new token needs no mask.
  at::Tensor mask;
  if (n > 1) {
    at::Tensor row = at::arange(n, positions.options()).unsqueeze(1) + past;
    at::Tensor col = at::arange(past + n, positions.options()).unsqueeze(0);
    mask = at::zeros({n, past + n}, x.options()).masked_fill_(col > row, -std::numeric_limits<float>::infinity());
  }
  const int64_t heads = t.num_attention_heads;
  for (size_t i = 0; i < text_layers.size(); ++i) {
    TextLayer& l = text_layers[i];
    BertAttention& sa = l.self_attention;
    at::Tensor k = split_heads(sa.key(x), heads), v = split_heads(sa.value(x), heads);
    if (past > 0) {
      k = at::cat({cache.self_keys[i], k}, 2);
      v = at::cat({cache.self_values[i], v}, 2);
    }
    cache.self_keys[i] = k;
    cache.self_values[i] = v;
    at::Tensor h = merge_heads(attend(split_heads(sa.query(x), heads), k, v, mask));
    x = sa.layer_norm(sa.dense(h) + x);
    BertAttention& ca = l.cross_attention;
    h = merge_heads(attend(split_heads(ca.query(x), heads), cache.cross_keys[i], cache.cross_values[i], {}));
    x = ca.layer_norm(ca.dense(h) + x);
    x = l.output_norm(l.output(activation(l.intermediate(x), t.hidden_act)) + x);
  }
  at::Tensor h = transform_norm(activation(transform(x), t.hidden_act));
  return at::linear(h, word_embeddings->weight, output_bias).to(at::kFloat);
}

at::Tensor BlipImpl::logits(const at::Tensor& pixels, const at::Tensor& ids) {
  BlipDecoderCache cache = start_decoding(image_embeds(pixels));
  return decode(ids, cache);
}

Blip load_blip(const std::string& dir, const at::TensorOptions& options) {
  const std::string weights = hub_model_weights(dir, "--blip_model", "Salesforce/blip-image-captioning-large");
  Blip model(BlipConfig::from_json_text(read_file(dir + "/config.json"), dir + "/config.json"), options);
  // The output matrix and bias are tied to the word embeddings and cls.predictions.bias; files
  // written before the tie was made explicit also hold cls.predictions.decoder.*, unused here.
  load_hub_weights(*model, weights, "BLIP " + dir);
  return model;
}

}  // namespace xltune
