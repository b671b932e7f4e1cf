#include "text/clip_text_model.h"

#include <ATen/ATen.h>
#include <torch/nn/modules/container/modulelist.h>

#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/attention_kernel.h"
#include "core/check.h"

namespace xltune {

// -- config -------------------------------------------------------------------------------------

ClipTextConfig ClipTextConfig::from_json_file(const std::string& path) {
  return from_json_text(read_file(path), path);
}

ClipTextConfig ClipTextConfig::from_json_text(const std::string& text, const std::string& source) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    XLTUNE_FAIL(source, ": not valid JSON: ", e.what());
  }
  XLTUNE_CHECK(j.is_object(), source, ": expected a JSON object");
  // transformers nests the text config under "text_config" in a full CLIP config.
  if (j.contains("text_config") && j["text_config"].is_object() && !j.contains("hidden_size")) j = j["text_config"];
  ClipTextConfig c;
  auto get_int = [&](const char* key, int64_t& out, bool required) {
    if (!j.contains(key)) {
      XLTUNE_CHECK(!required, source, ": missing \"", key, "\"");
      return;
    }
    XLTUNE_CHECK(j[key].is_number_integer() && j[key].get<int64_t>() > 0, source, ": \"", key,
                 "\": expected a positive integer, got ", j[key].dump());
    out = j[key].get<int64_t>();
  };
  get_int("vocab_size", c.vocab_size, false);
  get_int("hidden_size", c.hidden_size, true);
  get_int("intermediate_size", c.intermediate_size, true);
  get_int("num_hidden_layers", c.num_hidden_layers, true);
  get_int("num_attention_heads", c.num_attention_heads, true);
  get_int("max_position_embeddings", c.max_position_embeddings, false);
  get_int("projection_dim", c.projection_dim, false);
  if (j.contains("hidden_act")) {
    XLTUNE_CHECK(j["hidden_act"].is_string(), source, ": \"hidden_act\": expected a string");
    c.hidden_act = j["hidden_act"].get<std::string>();
  }
  XLTUNE_CHECK(c.hidden_act == "quick_gelu" || c.hidden_act == "gelu", source, ": \"hidden_act\": expected ",
               "quick_gelu or gelu, got '", c.hidden_act, "'");
  if (j.contains("layer_norm_eps")) {
    XLTUNE_CHECK(j["layer_norm_eps"].is_number(), source, ": \"layer_norm_eps\": expected a number");
    c.layer_norm_eps = j["layer_norm_eps"].get<double>();
  }
  if (j.contains("architectures") && j["architectures"].is_array()) {
    for (const auto& a : j["architectures"])
      if (a.is_string() && a.get<std::string>() == "CLIPTextModelWithProjection") c.with_projection = true;
  }
  XLTUNE_CHECK(c.hidden_size % c.num_attention_heads == 0, source, ": hidden_size ", c.hidden_size,
               " is not a multiple of num_attention_heads ", c.num_attention_heads);
  return c;
}

// -- modules ------------------------------------------------------------------------------------

ClipTokenEmbeddingImpl::ClipTokenEmbeddingImpl(int64_t count, int64_t dim, const at::TensorOptions& options) {
  weight = register_parameter("weight", at::empty({count, dim}, options));
}

at::Tensor ClipTokenEmbeddingImpl::forward(const at::Tensor& ids) {
  if (!new_rows.defined()) return at::embedding(weight, ids);
  // Two lookups and a select, so the frozen table is never copied or concatenated.
  const int64_t base = weight.size(0);
  at::Tensor is_new = ids.ge(base).unsqueeze(-1);
  at::Tensor old_part = at::embedding(weight, ids.clamp_max(base - 1));
  at::Tensor new_part = at::embedding(new_rows, (ids - base).clamp(0, new_rows.size(0) - 1));
  // The rows are fp32 whatever the table's dtype (bf16 on a GPU): they are trained.
  return at::where(is_new, new_part.to(old_part.scalar_type()), old_part);
}

ClipAttentionImpl::ClipAttentionImpl(const ClipTextConfig& c, const at::TensorOptions& o)
    : heads(c.num_attention_heads), causal(c.causal) {
  q_proj = register_module("q_proj", nn::Linear(c.hidden_size, c.hidden_size, true, o));
  k_proj = register_module("k_proj", nn::Linear(c.hidden_size, c.hidden_size, true, o));
  v_proj = register_module("v_proj", nn::Linear(c.hidden_size, c.hidden_size, true, o));
  out_proj = register_module("out_proj", nn::Linear(c.hidden_size, c.hidden_size, true, o));
}

at::Tensor ClipAttentionImpl::forward(const at::Tensor& x) {
  const int64_t b = x.size(0), l = x.size(1), d = x.size(2);
  auto split_heads = [&](const at::Tensor& t) { return t.view({b, l, heads, d / heads}).transpose(1, 2); };
  at::Tensor out = attention(split_heads(q_proj(x)), split_heads(k_proj(x)), split_heads(v_proj(x)), causal);
  return out_proj(out.transpose(1, 2).reshape({b, l, d}));
}

ClipMlpImpl::ClipMlpImpl(const ClipTextConfig& c, const at::TensorOptions& o) : act(c.hidden_act) {
  fc1 = register_module("fc1", nn::Linear(c.hidden_size, c.intermediate_size, true, o));
  fc2 = register_module("fc2", nn::Linear(c.intermediate_size, c.hidden_size, true, o));
}

at::Tensor ClipMlpImpl::forward(const at::Tensor& x) {
  at::Tensor h = fc1(x);
  h = act == "quick_gelu" ? h * at::sigmoid(1.702 * h) : act == "relu" ? at::relu(h) : at::gelu(h);
  return fc2(h);
}

ClipEncoderLayerImpl::ClipEncoderLayerImpl(const ClipTextConfig& c, const at::TensorOptions& o) {
  self_attn = register_module("self_attn", ClipAttention(c, o));
  layer_norm1 = register_module("layer_norm1", nn::LayerNorm(c.hidden_size, c.layer_norm_eps, o));
  mlp = register_module("mlp", ClipMlp(c, o));
  layer_norm2 = register_module("layer_norm2", nn::LayerNorm(c.hidden_size, c.layer_norm_eps, o));
}

at::Tensor ClipEncoderLayerImpl::forward(const at::Tensor& x) {
  at::Tensor h = x + self_attn(layer_norm1(x));
  return h + mlp(layer_norm2(h));
}

ClipTextModelImpl::ClipTextModelImpl(const ClipTextConfig& config, const at::TensorOptions& options)
    : config_(config) {
  auto text_model = register_module("text_model", std::make_shared<nn::Container>());
  auto embeddings = text_model->register_module("embeddings", std::make_shared<nn::Container>());
  token_embedding = embeddings->register_module(
      "token_embedding", ClipTokenEmbedding(config.vocab_size, config.hidden_size, options));
  position_embedding = embeddings->register_module(
      "position_embedding", nn::Embedding(config.max_position_embeddings, config.hidden_size, options));
  auto encoder = text_model->register_module("encoder", std::make_shared<nn::Container>());
  torch::nn::ModuleList list;
  for (int64_t i = 0; i < config.num_hidden_layers; ++i) {
    layers.push_back(ClipEncoderLayer(config, options));
    list->push_back(layers.back());
  }
  encoder->register_module("layers", list);
  final_layer_norm = text_model->register_module(
      "final_layer_norm", nn::LayerNorm(config.hidden_size, config.layer_norm_eps, options));
  if (config.with_projection) {
    text_projection = register_module("text_projection",
                                      nn::Linear(config.hidden_size, config.projection_dim, false, options));
  }
}

ClipTextOutput ClipTextModelImpl::forward(const at::Tensor& ids, bool all_hidden_states) {
  XLTUNE_CHECK(ids.dim() == 2 && ids.scalar_type() == at::kLong, "text encoder: expected int64 ids [batch, length]");
  const int64_t length = ids.size(1);
  XLTUNE_CHECK(length <= config_.max_position_embeddings, "text encoder: ", length, " tokens, at most ",
               config_.max_position_embeddings);
  const int64_t vocab = token_embedding->base_count() + token_embedding->new_count();
  if (ids.is_cpu() && ids.numel() > 0) {  // on a GPU this check would cost a sync per step
    XLTUNE_CHECK(ids.min().item<int64_t>() >= 0 && ids.max().item<int64_t>() < vocab,
                 "text encoder: token ids must lie in 0 .. ", vocab - 1);
  }
  ClipTextOutput out;
  at::Tensor positions = at::arange(length, ids.options());
  at::Tensor h = token_embedding(ids) + position_embedding(positions).unsqueeze(0);
  if (all_hidden_states) out.hidden_states.push_back(h);
  for (size_t i = 0; i < layers.size(); ++i) {
    if (i + 1 == layers.size()) out.penultimate = h;
    h = layers[i]->forward(h);
    if (all_hidden_states) out.hidden_states.push_back(h);
  }
  if (layers.empty()) out.penultimate = h;
  out.last_hidden_state = final_layer_norm(h);
  // First end-of-text token per row; a row without one pools its last position.
  at::Tensor is_eos = ids.eq(eos_token_id);
  at::Tensor first = at::where(is_eos.any(1), is_eos.to(at::kInt).argmax(1), at::full_like(ids.select(1, 0), length - 1));
  out.pooled = out.last_hidden_state.index({at::arange(ids.size(0), ids.options()), first});
  if (text_projection) out.text_embeds = text_projection(out.pooled);
  return out;
}

at::Tensor ClipTextModelImpl::add_new_tokens(int64_t count, at::Generator generator) {
  XLTUNE_CHECK(count > 0, "add_new_tokens: expected a positive count, got ", count);
  XLTUNE_CHECK(!token_embedding->new_rows.defined(), "new tokens were already added to this text encoder");
  at::Tensor table = token_embedding->weight;
  at::Tensor rows;
  {
    at::NoGradGuard no_grad;
    // As the reference trainer: randn(n, dim) * std(table), in fp32 (they are trained, so they
    // stay fp32 when the table is bf16), on the table's device.
    at::Tensor std = table.to(at::kFloat).std();
    rows = (at::randn({count, table.size(1)}, generator, at::TensorOptions().dtype(at::kFloat)) * std.cpu())
               .to(table.device());
  }
  table.requires_grad_(false);
  token_embedding->new_rows = token_embedding->register_parameter("new_rows", rows);
  return token_embedding->new_rows;
}

}  // namespace xltune
