#include "prep/swin2sr.h"

#include <ATen/ATen.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/check.h"
#include "prep/hub_config.h"

namespace xltune {
namespace {

std::string get_string(const nlohmann::json& j, const char* key, const std::string& fallback,
                       const std::string& source) {
  if (!j.contains(key)) return fallback;
  if (j[key].is_null()) return "";
  XLTUNE_CHECK(j[key].is_string(), source, ": \"", key, "\": expected a string");
  return j[key].get<std::string>();
}

// An int or a list of ints (height, width): the first, as transformers' layers use only it.
int64_t get_size(const nlohmann::json& j, const char* key, int64_t fallback, const std::string& source) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  const auto& v = j[key];
  if (v.is_number_integer()) return v.get<int64_t>();
  XLTUNE_CHECK(v.is_array() && v.size() == 2 && v[0].is_number_integer() && v[1].is_number_integer(), source, ": \"",
               key, "\": expected an integer or [height, width]");
  return v[0].get<int64_t>();
}

std::vector<int64_t> get_list(const nlohmann::json& j, const char* key, const std::vector<int64_t>& fallback,
                              const std::string& source) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  XLTUNE_CHECK(j[key].is_array() && !j[key].empty(), source, ": \"", key, "\": expected a list of positive integers");
  std::vector<int64_t> out;
  for (const auto& e : j[key]) {
    XLTUNE_CHECK(e.is_number_integer() && e.get<int64_t>() > 0, source, ": \"", key,
                 "\": expected a list of positive integers");
    out.push_back(e.get<int64_t>());
  }
  return out;
}

// window_partition: [B, H, W, C] -> [B * (H / w) * (W / w), w, w, C].
at::Tensor window_partition(const at::Tensor& x, int64_t w) {
  const int64_t b = x.size(0), h = x.size(1), wd = x.size(2), c = x.size(3);
  return x.view({b, h / w, w, wd / w, w, c}).transpose(2, 3).contiguous().view({-1, w, w, c});
}

// window_reverse: the inverse.
at::Tensor window_reverse(const at::Tensor& windows, int64_t w, int64_t h, int64_t wd) {
  const int64_t c = windows.size(-1);
  return windows.view({-1, h / w, wd / w, w, w, c}).transpose(2, 3).contiguous().view({-1, h, wd, c});
}

at::Tensor activation(const at::Tensor& x, const std::string& act) {
  if (act == "gelu") return at::gelu(x);
  if (act == "gelu_new" || act == "gelu_pytorch_tanh") return at::gelu(x, "tanh");
  if (act == "relu") return at::relu(x);
  return at::silu(x);  // silu, swish
}

nn::Conv2d conv3(torch::nn::Module& parent, const std::string& name, int64_t in, int64_t out,
                 const at::TensorOptions& o) {
  return parent.register_module(name, nn::Conv2d(in, out, 3, 1, 1, o));
}

}  // namespace

int64_t Swin2SrConfig::layer_window() const { return std::min(image_size / patch_size, window_size); }

int64_t Swin2SrConfig::layer_shift() const {
  return image_size / patch_size <= layer_window() ? 0 : window_size / 2;
}

Swin2SrConfig Swin2SrConfig::from_json_text(const std::string& text, const std::string& source) {
  const nlohmann::json j = parse_config_object(text, source);
  Swin2SrConfig c;
  c.image_size = get_size(j, "image_size", c.image_size, source);
  c.patch_size = get_size(j, "patch_size", c.patch_size, source);
  if (j.contains("patch_size") && j["patch_size"].is_array())
    XLTUNE_CHECK(j["patch_size"][1] == j["patch_size"][0], source, ": \"patch_size\": expected 1");
  c.num_channels = config_int(j, "num_channels", c.num_channels, source);
  c.num_channels_out = config_int(j, "num_channels_out", c.num_channels, source);
  c.embed_dim = config_int(j, "embed_dim", c.embed_dim, source);
  c.depths = get_list(j, "depths", c.depths, source);
  c.num_heads = get_list(j, "num_heads", c.num_heads, source);
  c.window_size = config_int(j, "window_size", c.window_size, source);
  c.mlp_ratio = config_number(j, "mlp_ratio", c.mlp_ratio, source);
  c.qkv_bias = config_bool(j, "qkv_bias", c.qkv_bias, source);
  c.hidden_act = get_string(j, "hidden_act", c.hidden_act, source);
  c.layer_norm_eps = config_number(j, "layer_norm_eps", c.layer_norm_eps, source);
  c.upscale = config_int(j, "upscale", c.upscale, source);
  c.img_range = config_number(j, "img_range", c.img_range, source);
  c.resi_connection = get_string(j, "resi_connection", c.resi_connection, source);
  c.upsampler = get_string(j, "upsampler", c.upsampler, source);
  const bool absolute = j.contains("use_absolute_embeddings") && j["use_absolute_embeddings"].is_boolean() &&
                        j["use_absolute_embeddings"].get<bool>();

  XLTUNE_CHECK(!absolute, source,
               ": \"use_absolute_embeddings\": true is not supported (transformers' Swin2SR cannot add them "
               "either: they have image_size^2 + 1 positions)");
  XLTUNE_CHECK(c.patch_size == 1, source, ": \"patch_size\" ", c.patch_size,
               ": expected 1 (transformers' Swin2SR reconstructs at the input's resolution)");
  XLTUNE_CHECK(c.image_size >= 1, source, ": \"image_size\": expected a positive integer");
  XLTUNE_CHECK(c.window_size >= 1, source, ": \"window_size\": expected a positive integer");
  XLTUNE_CHECK(c.num_channels >= 1 && c.num_channels_out >= 1, source,
               ": \"num_channels\", \"num_channels_out\": expected positive integers");
  XLTUNE_CHECK(c.embed_dim >= 1, source, ": \"embed_dim\": expected a positive integer");
  XLTUNE_CHECK(c.depths.size() == c.num_heads.size(), source, ": \"depths\" has ", c.depths.size(),
               " stages but \"num_heads\" ", c.num_heads.size());
  for (int64_t h : c.num_heads)
    XLTUNE_CHECK(c.embed_dim % h == 0, source, ": \"embed_dim\" ", c.embed_dim, " is not a multiple of num_heads ", h);
  XLTUNE_CHECK(c.mlp_ratio > 0, source, ": \"mlp_ratio\": expected a positive number");
  XLTUNE_CHECK(c.img_range > 0, source, ": \"img_range\": expected a positive number");
  XLTUNE_CHECK(c.hidden_act == "gelu" || c.hidden_act == "gelu_new" || c.hidden_act == "gelu_pytorch_tanh" ||
                   c.hidden_act == "relu" || c.hidden_act == "silu" || c.hidden_act == "swish",
               source, ": \"hidden_act\": expected gelu, gelu_new, gelu_pytorch_tanh, relu or silu, got '",
               c.hidden_act, "'");
  XLTUNE_CHECK(c.resi_connection == "1conv" || c.resi_connection == "3conv", source,
               ": \"resi_connection\": expected \"1conv\" or \"3conv\", got '", c.resi_connection, "'");
  XLTUNE_CHECK(c.resi_connection == "1conv" || c.embed_dim % 4 == 0, source,
               ": \"resi_connection\" \"3conv\" needs embed_dim divisible by 4, got ", c.embed_dim);
  XLTUNE_CHECK(c.upsampler == "pixelshuffle" || c.upsampler == "pixelshuffledirect" || c.upsampler == "nearest+conv",
               source, ": \"upsampler\" '", c.upsampler,
               "': xltune runs the super-resolution heads pixelshuffle, pixelshuffledirect and nearest+conv (not "
               "pixelshuffle_aux, nor the denoising / JPEG models without an upsampler)");
  XLTUNE_CHECK(c.upscale >= 1, source, ": \"upscale\": expected a positive integer");
  XLTUNE_CHECK(c.upsampler != "nearest+conv" || c.upscale == 4, source, ": \"upscale\" ", c.upscale,
               ": the nearest+conv upsampler is x4 only");
  XLTUNE_CHECK(c.upsampler != "pixelshuffle" || (c.upscale & (c.upscale - 1)) == 0 || c.upscale == 3, source,
               ": \"upscale\" ", c.upscale, ": the pixelshuffle upsampler takes powers of 2 and 3");
  return c;
}

Swin2SrSelfAttentionImpl::Swin2SrSelfAttentionImpl(const Swin2SrConfig& c, int64_t dim, int64_t heads_,
                                                   int64_t window_, const at::TensorOptions& o)
    : heads(heads_), window(window_) {
  logit_scale = register_parameter("logit_scale", at::empty({heads, 1, 1}, o));
  auto mlp = register_module("continuous_position_bias_mlp", std::make_shared<nn::Container>());
  cpb_in = mlp->register_module("0", nn::Linear(2, 512, true, o));
  cpb_out = mlp->register_module("2", nn::Linear(512, heads, false, o));
  query = register_module("query", nn::Linear(dim, dim, c.qkv_bias, o));
  key = register_module("key", nn::Linear(dim, dim, false, o));
  value = register_module("value", nn::Linear(dim, dim, c.qkv_bias, o));

  // create_coords_table_and_index (pretrained_window_size 0), in fp32 on the CPU, then cast.
  const auto f32 = at::TensorOptions().dtype(at::kFloat);
  at::Tensor r = at::arange(-(window - 1), window, at::TensorOptions().dtype(at::kLong)).to(at::kFloat);
  auto grid = at::meshgrid({r, r}, "ij");
  at::Tensor table = at::stack({grid[0], grid[1]}).permute({1, 2, 0}).contiguous().unsqueeze(0);
  if (window > 1) table = table / static_cast<float>(window - 1);
  table = table * 8;
  table = at::sign(table) * at::log2(at::abs(table) + 1.0) / std::log2(8.0);
  relative_coords_table = table.to(f32).to(o);
  at::Tensor coords = at::arange(window, at::TensorOptions().dtype(at::kLong));
  auto cg = at::meshgrid({coords, coords}, "ij");
  at::Tensor flat = at::stack({cg[0], cg[1]}).flatten(1);                               // [2, w^2]
  at::Tensor rel = (flat.unsqueeze(2) - flat.unsqueeze(1)).permute({1, 2, 0}).contiguous();  // [w^2, w^2, 2]
  at::Tensor dh = (rel.select(2, 0) + (window - 1)) * (2 * window - 1);
  at::Tensor dw = rel.select(2, 1) + (window - 1);
  relative_position_index = (dh + dw).to(o.device());
}

at::Tensor Swin2SrSelfAttentionImpl::position_bias() {
  at::Tensor table = cpb_out(at::relu(cpb_in(relative_coords_table))).view({-1, heads});
  const int64_t n = window * window;
  at::Tensor bias = table.index_select(0, relative_position_index.view(-1)).view({n, n, -1});
  return 16 * at::sigmoid(bias.permute({2, 0, 1}).contiguous());
}

at::Tensor Swin2SrSelfAttentionImpl::forward(const at::Tensor& x, const at::Tensor& mask) {
  const int64_t b = x.size(0), n = x.size(1), dim = x.size(2), hd = dim / heads;
  at::Tensor q = query(x).view({b, -1, heads, hd}).transpose(1, 2);
  at::Tensor k = key(x).view({b, -1, heads, hd}).transpose(1, 2);
  at::Tensor v = value(x).view({b, -1, heads, hd}).transpose(1, 2);
  // Cosine attention: F.normalize (x / max(|x|, 1e-12)) in the tensors' dtype.
  auto normalize = [](const at::Tensor& t) {
    return t / at::linalg_vector_norm(t, 2, at::IntArrayRef{-1}, /*keepdim=*/true).clamp_min(1e-12);
  };
  at::Tensor scores = at::matmul(normalize(q), normalize(k).transpose(-2, -1));
  scores = scores * at::clamp_max(logit_scale, std::log(1.0 / 0.01)).exp();
  scores = scores + position_bias().unsqueeze(0);
  if (mask.defined()) {
    // As transformers does: the mask added twice (-200 where windows wrap).
    const int64_t windows = mask.size(0);
    const at::Tensor m = mask.unsqueeze(1).unsqueeze(0);
    scores = scores.view({b / windows, windows, heads, n, n}) + m;
    scores = (scores + m).view({-1, heads, n, n});
  }
  at::Tensor probs = at::softmax(scores, -1);
  return at::matmul(probs, v).permute({0, 2, 1, 3}).contiguous().view({b, n, dim});
}

Swin2SrLayerImpl::Swin2SrLayerImpl(const Swin2SrConfig& c, int64_t dim, int64_t heads, int64_t shift_,
                                   const at::TensorOptions& o)
    : window(c.layer_window()), shift(shift_), act(c.hidden_act) {
  auto attention = register_module("attention", std::make_shared<nn::Container>());
  self_attention = attention->register_module("self", Swin2SrSelfAttention(c, dim, heads, window, o));
  auto attention_out = attention->register_module("output", std::make_shared<nn::Container>());
  attention_output = attention_out->register_module("dense", nn::Linear(dim, dim, true, o));
  layernorm_before = register_module("layernorm_before", nn::LayerNorm(dim, c.layer_norm_eps, o));
  const auto hidden = static_cast<int64_t>(c.mlp_ratio * static_cast<double>(dim));  // int(), truncated
  intermediate = register_module("intermediate", std::make_shared<nn::Container>())
                     ->register_module("dense", nn::Linear(dim, hidden, true, o));
  output = register_module("output", std::make_shared<nn::Container>())
               ->register_module("dense", nn::Linear(hidden, dim, true, o));
  layernorm_after = register_module("layernorm_after", nn::LayerNorm(dim, c.layer_norm_eps, o));
}

at::Tensor Swin2SrLayerImpl::forward(const at::Tensor& x, int64_t height, int64_t width) {
  const int64_t b = x.size(0), channels = x.size(2);
  // Zero-padded to a multiple of the window (only when the windows are not the config's).
  const int64_t pad_right = (window - width % window) % window, pad_bottom = (window - height % window) % window;
  at::Tensor h = at::constant_pad_nd(x.reshape({b, height, width, channels}), {0, 0, 0, pad_right, 0, pad_bottom}, 0);
  const int64_t hp = h.size(1), wp = h.size(2);
  if (shift > 0) h = at::roll(h, {-shift, -shift}, {1, 2});
  at::Tensor windows = window_partition(h, window).view({-1, window * window, channels});
  at::Tensor mask;
  if (shift > 0) {
    // get_attn_mask: 3 regions per axis (the wrapped strips), windows see only their own region.
    const auto lo = at::TensorOptions().dtype(at::kLong).device(x.device());
    at::Tensor hi = at::arange(hp, lo), wi = at::arange(wp, lo);
    at::Tensor hr = (hi >= hp - window).to(at::kLong) + (hi >= hp - shift).to(at::kLong);
    at::Tensor wr = (wi >= wp - window).to(at::kLong) + (wi >= wp - shift).to(at::kLong);
    at::Tensor img = (hr.view({1, hp, 1, 1}) * 3 + wr.view({1, 1, wp, 1})).to(x.scalar_type());
    at::Tensor mw = window_partition(img, window).view({-1, window * window});
    at::Tensor diff = mw.unsqueeze(1) - mw.unsqueeze(2);
    mask = diff.masked_fill(diff != 0, -100.0).masked_fill(diff == 0, 0.0);
  }
  at::Tensor a = attention_output(self_attention(windows, mask));
  a = window_reverse(a.view({-1, window, window, channels}), window, hp, wp);
  if (shift > 0) a = at::roll(a, {shift, shift}, {1, 2});
  if (pad_right > 0 || pad_bottom > 0) a = a.slice(1, 0, height).slice(2, 0, width).contiguous();
  a = a.view({b, height * width, channels});
  at::Tensor hs = x + layernorm_before(a);
  return hs + layernorm_after(output(activation(intermediate(hs), act)));
}

Swin2SrStageImpl::Swin2SrStageImpl(const Swin2SrConfig& c, int64_t depth, int64_t heads, const at::TensorOptions& o) {
  const int64_t dim = c.embed_dim;
  for (int64_t i = 0; i < depth; ++i) layers.push_back(Swin2SrLayer(c, dim, heads, i % 2 == 0 ? 0 : c.layer_shift(), o));
  nn::register_list(*this, "layers", layers);
  if (c.resi_connection == "1conv") {
    convs.push_back(conv3(*this, "conv", dim, dim, o));
  } else {
    auto seq = register_module("conv", std::make_shared<nn::Container>());
    convs.push_back(conv3(*seq, "0", dim, dim / 4, o));
    convs.push_back(seq->register_module("2", nn::Conv2d(dim / 4, dim / 4, 1, 1, 0, o)));
    convs.push_back(conv3(*seq, "4", dim / 4, dim, o));
  }
  projection = register_module("patch_embed", std::make_shared<nn::Container>())
                   ->register_module("projection", nn::Conv2d(dim, dim, 1, 1, 0, o));
}

at::Tensor Swin2SrStageImpl::forward(const at::Tensor& x, int64_t height, int64_t width) {
  at::Tensor h = x;
  for (auto& layer : layers) h = layer->forward(h, height, width);
  h = h.transpose(1, 2).reshape({x.size(0), x.size(2), height, width});  // patch_unembed
  for (size_t i = 0; i < convs.size(); ++i) {
    h = convs[i](h);
    if (i + 1 < convs.size()) h = at::leaky_relu(h, 0.2);
  }
  return projection(h).flatten(2).transpose(1, 2) + x;
}

Swin2SrImpl::Swin2SrImpl(const Swin2SrConfig& c, const at::TensorOptions& o) : config_(c) {
  auto body = register_module("swin2sr", std::make_shared<nn::Container>());
  first_convolution = conv3(*body, "first_convolution", c.num_channels, c.embed_dim, o);
  auto patches = body->register_module("embeddings", std::make_shared<nn::Container>())
                     ->register_module("patch_embeddings", std::make_shared<nn::Container>());
  patch_projection = patches->register_module("projection", nn::Conv2d(c.embed_dim, c.embed_dim, 1, 1, 0, o));
  patch_layernorm = patches->register_module("layernorm", nn::LayerNorm(c.embed_dim, 1e-5, o));  // nn.LayerNorm(dim)
  auto encoder = body->register_module("encoder", std::make_shared<nn::Container>());
  for (size_t i = 0; i < c.depths.size(); ++i) stages.push_back(Swin2SrStage(c, c.depths[i], c.num_heads[i], o));
  nn::register_list(*encoder, "stages", stages);
  layernorm = body->register_module("layernorm", nn::LayerNorm(c.embed_dim, c.layer_norm_eps, o));
  conv_after_body = conv3(*body, "conv_after_body", c.embed_dim, c.embed_dim, o);

  auto up = register_module("upsample", std::make_shared<nn::Container>());
  const int64_t features = 64;  // transformers' num_features
  auto add = [&](torch::nn::Module& parent, const std::string& prefix, const std::string& name, int64_t in,
                 int64_t out) { head.emplace(prefix + name, conv3(parent, name, in, out, o)); };
  if (c.upsampler == "pixelshuffledirect") {
    add(*up, "", "conv", c.embed_dim, c.upscale * c.upscale * c.num_channels_out);
  } else {
    add(*up, "", "conv_before_upsample", c.embed_dim, features);
    if (c.upsampler == "pixelshuffle") {
      auto inner = up->register_module("upsample", std::make_shared<nn::Container>());
      if (c.upscale == 3) {
        add(*inner, "upsample.", "convolution", features, 9 * features);
      } else {
        for (int64_t s = c.upscale, i = 0; s > 1; s /= 2, ++i)
          add(*inner, "upsample.", "convolution_" + std::to_string(i), features, 4 * features);
      }
    } else {  // nearest+conv
      for (const char* name : {"conv_up1", "conv_up2", "conv_hr"}) add(*up, "", name, features, features);
    }
    add(*up, "", "final_convolution", features, c.num_channels_out);
  }

  at::Tensor m = c.num_channels == 3 && c.num_channels_out == 3
                     ? at::tensor(std::vector<float>{0.4488f, 0.4371f, 0.4040f}).view({1, 3, 1, 1})
                     : at::zeros({1, 1, 1, 1}, at::kFloat);
  mean = m.to(o);
}

at::Tensor Swin2SrImpl::upsample(const at::Tensor& x) {
  const Swin2SrConfig& c = config_;
  if (c.upsampler == "pixelshuffledirect") return at::pixel_shuffle(head.at("conv")(x), c.upscale);
  at::Tensor h = at::leaky_relu(head.at("conv_before_upsample")(x), 0.01);
  if (c.upsampler == "pixelshuffle") {
    if (c.upscale == 3) {
      h = at::pixel_shuffle(head.at("upsample.convolution")(h), 3);
    } else {
      for (int64_t s = c.upscale, i = 0; s > 1; s /= 2, ++i)
        h = at::pixel_shuffle(head.at("upsample.convolution_" + std::to_string(i))(h), 2);
    }
  } else {  // nearest+conv
    auto nearest2 = [](const at::Tensor& t) {  // F.interpolate(scale_factor=2, mode="nearest")
      const std::vector<int64_t> size{2 * t.size(2), 2 * t.size(3)};
      return at::upsample_nearest2d(t, size, 2.0, 2.0);
    };
    h = at::leaky_relu(head.at("conv_up1")(nearest2(h)), 0.2);
    h = at::leaky_relu(head.at("conv_up2")(nearest2(h)), 0.2);
    h = at::leaky_relu(head.at("conv_hr")(h), 0.2);
  }
  return head.at("final_convolution")(h);
}

at::Tensor Swin2SrImpl::forward(const at::Tensor& pixels) {
  const Swin2SrConfig& c = config_;
  XLTUNE_CHECK(pixels.dim() == 4 && pixels.size(1) == c.num_channels, "Swin2SR: expected pixels [B, ", c.num_channels,
               ", H, W], got ", pixels.sizes());
  const int64_t b = pixels.size(0), height = pixels.size(2), width = pixels.size(3);
  const at::Tensor& w = first_convolution->weight;
  at::Tensor x = pixels.to(w.device(), w.scalar_type());
  // pad_and_normalize: reflect to a multiple of window_size, then (x - mean) * img_range.
  const int64_t ws = c.window_size;
  const int64_t pad_h = (ws - height % ws) % ws, pad_w = (ws - width % ws) % ws;
  if (pad_h > 0 || pad_w > 0) {
    XLTUNE_CHECK(pad_h < height && pad_w < width, "Swin2SR: a ", width, "x", height,
                 " input is too small to reflect-pad to a multiple of the window ", ws);
    x = at::reflection_pad2d(x, {0, pad_w, 0, pad_h});
  }
  x = (x - mean) * c.img_range;
  const int64_t hp = x.size(2), wp = x.size(3);
  at::Tensor embeddings = first_convolution(x);
  at::Tensor h = patch_layernorm(patch_projection(embeddings).flatten(2).transpose(1, 2));
  for (auto& stage : stages) h = stage->forward(h, hp, wp);
  h = layernorm(h);
  at::Tensor sequence = conv_after_body(h.transpose(1, 2).reshape({b, c.embed_dim, hp, wp})) + embeddings;
  at::Tensor reconstruction = upsample(sequence) / c.img_range + mean;
  return reconstruction.slice(2, 0, height * c.upscale).slice(3, 0, width * c.upscale);
}

Swin2Sr load_swin2sr(const std::string& dir, const at::TensorOptions& options) {
  const std::string weights =
      hub_model_weights(dir, "--upscaler_model", "caidas/swin2SR-realworld-sr-x4-64-bsrgan-psnr");
  Swin2Sr model(Swin2SrConfig::from_json_text(read_file(dir + "/config.json"), dir + "/config.json"), options);
  load_hub_weights(*model, weights, "Swin2SR " + dir);
  return model;
}

}  // namespace xltune
