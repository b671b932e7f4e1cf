// Swin2SR (Conde et al. 2022), transformers' Swin2SRForImageSuperResolution, for the reference
// trainer's upscaling of small crops (caidas/swin2SR-realworld-sr-x4-64-bsrgan-psnr). Modules are
// registered under transformers' key names, so model.safetensors loads without renaming:
//   swin2sr.first_convolution                   3x3 conv, channels -> embed_dim
//   swin2sr.embeddings.patch_embeddings.*       1x1 projection (patch_size 1), layernorm (eps 1e-5)
//   swin2sr.encoder.stages.N.layers.M.*         SwinV2 layers: windowed cosine attention
//                                               (attention.self.{query,key,value,logit_scale,
//                                               continuous_position_bias_mlp.{0,2}}, attention.output.dense),
//                                               post-norm (layernorm_before / _after), MLP
//                                               (intermediate.dense, output.dense); odd layers shifted
//   swin2sr.encoder.stages.N.conv               the residual group's conv ("1conv"; "3conv": conv.0, .2, .4)
//   swin2sr.encoder.stages.N.patch_embed.projection   1x1 conv after it
//   swin2sr.layernorm, swin2sr.conv_after_body
//   upsample.*                                  pixelshuffle, pixelshuffledirect or nearest+conv
// transformers' non-persistent buffers (each attention's relative_coords_table and
// relative_position_index, the model's RGB mean) are not in model.safetensors: they are computed
// here, as its constructor does, and held as plain tensors (not registered), so loading neither
// expects nor saves them.
//
// forward(pixels) is transformers' reconstruction: reflect-padded to a multiple of window_size,
// (x - mean) * img_range, ..., / img_range + mean, cropped to upscale x the input. transformers
// itself fails on inputs that are not a multiple of window_size (its patch_unembed views the
// padded tokens at the unpadded size); here they are padded and cropped as in the original SwinIR.
//
// Note [Swin2SR upscaling]
// The reference (cog-sdxl preprocess.py swin_ir_sr) upscales the salience crop only when its
// side is below the training resolution R: Swin2SRImageProcessor() with its defaults (not the
// folder's preprocessor_config.json): x / 255, then a symmetric pad to the next multiple of 8,
// always 1 to 8 pixels (8 when the side already is a multiple); the model under fp16 autocast;
// reconstruction clamped to 0..1, * 255, rounded (half to even), uint8, HWC; then Lanczos to
// R x R. It keeps the pad: a 300 px crop comes back 1216 px (4 x 304), with a mirrored strip at
// the right and bottom, and the Lanczos to R squeezes it in. Here the pad is cropped off after
// upscaling, so the result is exactly 4 x the crop. The processor here reads the folder's
// preprocessor_config.json (the hub's has the same values as the defaults).
// Large inputs are tiled (prep/swin2sr_upscaler.h): tiles aligned to the window grid, each tile's
// outer quarter of the overlap dropped and the middle half blended linearly. Shifted windows and
// the convolutions make a tile's edge reach inwards by up to about (window - 1) per layer, so
// tiling is exact (to float noise) only when overlap / 4 exceeds that reach; with a trained
// model's local attention the difference elsewhere is small but not zero. On a GPU the model runs
// in bf16 batches (the reference: fp16 autocast), the cosine normalisation in that dtype, as
// transformers computes it.
#pragma once

#include <ATen/core/Tensor.h>

#include <map>
#include <string>
#include <vector>

#include "core/layers.h"

namespace xltune {

struct Swin2SrConfig {
  int64_t image_size = 64;  // the first (height) entry when a list: it alone sets the windows, as in transformers
  int64_t patch_size = 1;
  int64_t num_channels = 3;
  int64_t num_channels_out = 3;  // num_channels when missing
  int64_t embed_dim = 180;
  std::vector<int64_t> depths{6, 6, 6, 6, 6, 6};
  std::vector<int64_t> num_heads{6, 6, 6, 6, 6, 6};
  int64_t window_size = 8;
  double mlp_ratio = 2.0;
  bool qkv_bias = true;
  std::string hidden_act = "gelu";  // gelu, gelu_new / gelu_pytorch_tanh, relu, silu
  double layer_norm_eps = 1e-5;
  int64_t upscale = 2;
  double img_range = 1.0;
  std::string resi_connection = "1conv";  // or "3conv"
  std::string upsampler = "pixelshuffle";  // or "pixelshuffledirect", "nearest+conv" (x4 only)

  // The windows the layers use: min(image_size / patch_size, window_size); the shift of odd
  // layers: window_size / 2, or none when the resolution does not exceed the window.
  int64_t layer_window() const;
  int64_t layer_shift() const;

  // config.json as transformers writes it (transformers' defaults for what is missing). Errors
  // name the file and field; the heads that are not super-resolution (pixelshuffle_aux, none)
  // and absolute position embeddings are refused.
  static Swin2SrConfig from_json_text(const std::string& text, const std::string& source);
};

// Swin2SRSelfAttention: cosine attention in windows of window x window tokens, logit scale
// clamped at log(100), a continuous position bias 16 * sigmoid(mlp(log-spaced coords)).
class Swin2SrSelfAttentionImpl : public torch::nn::Module {
 public:
  Swin2SrSelfAttentionImpl(const Swin2SrConfig& c, int64_t dim, int64_t heads, int64_t window,
                           const at::TensorOptions& o);
  // x [windows * B, window^2, dim]; mask [windows, window^2, window^2] (0 / -100) or undefined.
  at::Tensor forward(const at::Tensor& x, const at::Tensor& mask);
  // [heads, window^2, window^2]: 16 * sigmoid of the position MLP, gathered by relative position.
  at::Tensor position_bias();

  at::Tensor logit_scale;
  nn::Linear cpb_in{nullptr}, cpb_out{nullptr};  // continuous_position_bias_mlp.0, .2
  nn::Linear query{nullptr}, key{nullptr}, value{nullptr};
  at::Tensor relative_coords_table;    // [1, 2w-1, 2w-1, 2], the parameters' dtype
  at::Tensor relative_position_index;  // [w^2, w^2] int64
  int64_t heads, window;
};
TORCH_MODULE(Swin2SrSelfAttention);

// Swin2SRLayer: (shifted) window attention and the MLP, each followed by its layernorm and added.
class Swin2SrLayerImpl : public torch::nn::Module {
 public:
  Swin2SrLayerImpl(const Swin2SrConfig& c, int64_t dim, int64_t heads, int64_t shift, const at::TensorOptions& o);
  // x [B, H * W, dim].
  at::Tensor forward(const at::Tensor& x, int64_t height, int64_t width);

  Swin2SrSelfAttention self_attention{nullptr};  // attention.self
  nn::Linear attention_output{nullptr};          // attention.output.dense
  nn::LayerNorm layernorm_before{nullptr}, layernorm_after{nullptr};
  nn::Linear intermediate{nullptr}, output{nullptr};  // intermediate.dense, output.dense
  int64_t window, shift;
  std::string act;
};
TORCH_MODULE(Swin2SrLayer);

// Swin2SRStage, the residual Swin transformer block: layers, conv, 1x1 projection, + the input.
class Swin2SrStageImpl : public torch::nn::Module {
 public:
  Swin2SrStageImpl(const Swin2SrConfig& c, int64_t depth, int64_t heads, const at::TensorOptions& o);
  at::Tensor forward(const at::Tensor& x, int64_t height, int64_t width);

  std::vector<Swin2SrLayer> layers;
  std::vector<nn::Conv2d> convs;  // one ("1conv") or three ("3conv", leaky relu 0.2 between)
  nn::Conv2d projection{nullptr};  // patch_embed.projection
};
TORCH_MODULE(Swin2SrStage);

class Swin2SrImpl : public torch::nn::Module {
 public:
  // Parameters allocated, not initialised; on options' device.
  Swin2SrImpl(const Swin2SrConfig& config, const at::TensorOptions& options);

  // pixels [B, num_channels, H, W] (the processor's: 0..1, any size): the reconstruction
  // [B, num_channels_out, upscale * H, upscale * W], in the parameters' dtype.
  at::Tensor forward(const at::Tensor& pixels);

  const Swin2SrConfig& config() const { return config_; }
  nn::Conv2d first_convolution{nullptr}, patch_projection{nullptr}, conv_after_body{nullptr};
  nn::LayerNorm patch_layernorm{nullptr}, layernorm{nullptr};
  std::vector<Swin2SrStage> stages;
  // upsample.*, by name: conv_before_upsample, upsample.convolution_i / upsample.convolution,
  // conv_up1, conv_up2, conv_hr, final_convolution, conv (pixelshuffledirect).
  std::map<std::string, nn::Conv2d> head;
  at::Tensor mean;  // [1, 3, 1, 1] (0.4488, 0.4371, 0.4040) for RGB in and out, else [1, 1, 1, 1] zeros

 private:
  at::Tensor upsample(const at::Tensor& x);
  Swin2SrConfig config_;
};
TORCH_MODULE(Swin2Sr);

// A Swin2SR folder as the hub ships it: config.json, model.safetensors (a pickle-only folder is
// an error that says how to convert it). Errors name the folder and what is wrong.
Swin2Sr load_swin2sr(const std::string& dir, const at::TensorOptions& options);

}  // namespace xltune
