// CLIPSeg (Lüddecke & Ecker 2022), transformers' CLIPSegForImageSegmentation, for the
// reference trainer's prompt masks (CIDAS/clipseg-rd64-refined). Modules are registered under
// transformers' key names, so model.safetensors loads without renaming:
//   clip.text_model.*          CLIP text transformer (text/clip_text_model.h, causal)
//   clip.text_projection       text features -> projection_dim (the conditioning)
//   clip.vision_model.*        ViT: patch conv (no bias), class embedding, position embedding
//                              (bicubically resized when the image is not image_size), pre-LN
//                              encoder (the text layers without the causal mask), post_layernorm
//   clip.visual_projection, clip.logit_scale   loaded, unused by segmentation
//   decoder.*                  FiLM of the conditioning on the first reduced activation, one
//                              post-LN transformer layer (relu) per extracted layer, transposed
//                              convolutions back to pixels
// forward(pixels, ids) gives logits [B, H, W] at the input size.
//
// The mask as the reference computes it (Note [CLIPSeg masks]): the prompt and "" against the
// same image, p = softmax(logits / temperature over the two)[prompt] = sigmoid((l_p - l_"") / T),
// clamp(p + 0.01, 0, 1), * 255 / max, truncated to 8 bits (PIL's F -> L), resized to the image
// with Pillow's bicubic filter.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

#include "core/layers.h"
#include "text/clip_text_model.h"

namespace xltune {

struct ClipSegConfig {
  ClipTextConfig text;    // with_projection, projection_dim
  ClipTextConfig vision;  // not causal; hidden_size, layers, heads of the ViT
  int64_t image_size = 224;
  int64_t patch_size = 32;
  int64_t num_channels = 3;
  int64_t projection_dim = 512;
  int64_t reduce_dim = 64;
  std::vector<int64_t> extract_layers{3, 6, 9};
  int64_t conditional_layer = 0;
  int64_t decoder_num_attention_heads = 4;
  int64_t decoder_intermediate_size = 2048;
  bool use_complex_transposed_convolution = false;

  // config.json as transformers writes it (text_config, vision_config and the decoder's
  // fields; transformers' defaults for what is missing). Errors name the file and field.
  static ClipSegConfig from_json_text(const std::string& text, const std::string& source);
};

// The post-LN transformer layer of the decoder (self-attention, relu MLP).
class ClipSegDecoderLayerImpl : public torch::nn::Module {
 public:
  ClipSegDecoderLayerImpl(const ClipTextConfig& c, const at::TensorOptions& o);
  at::Tensor forward(const at::Tensor& x);
  ClipAttention self_attn{nullptr};
  nn::LayerNorm layer_norm1{nullptr}, layer_norm2{nullptr};
  ClipMlp mlp{nullptr};
};
TORCH_MODULE(ClipSegDecoderLayer);

class ClipSegImpl : public torch::nn::Module {
 public:
  // Parameters allocated, not initialised; on options' device.
  ClipSegImpl(const ClipSegConfig& config, const at::TensorOptions& options);

  // pixels [B, 3, H, W] normalised (clipseg_processor.h), ids [B, L] int64: logits [B, H', W']
  // (H' = H / patch * patch).
  at::Tensor forward(const at::Tensor& pixels, const at::Tensor& ids);
  // The extracted layers' activations of the vision tower, [B, 1 + patches, hidden] each.
  std::vector<at::Tensor> vision_activations(const at::Tensor& pixels);
  // clip.text_projection(pooled text): the decoder's conditioning [B, projection_dim].
  at::Tensor conditional_embeddings(const at::Tensor& ids);

  const ClipSegConfig& config() const { return config_; }
  ClipTextModel clip{nullptr};  // clip.text_model.*, clip.text_projection, and the vision tower below
  nn::Conv2d patch_embedding{nullptr};
  at::Tensor class_embedding;
  nn::Embedding position_embedding{nullptr};
  nn::LayerNorm pre_layrnorm{nullptr}, post_layernorm{nullptr};
  std::vector<ClipEncoderLayer> vision_layers;
  nn::Linear film_mul{nullptr}, film_add{nullptr};
  std::vector<nn::Linear> reduces;
  std::vector<ClipSegDecoderLayer> decoder_layers;
  // decoder.transposed_convolution: with use_complex_transposed_convolution a conv 3x3, relu,
  // a transposed conv (patch / 4), relu, a transposed conv (patch / 4) (keys .0, .2, .4); else
  // one transposed conv (patch) (keys .weight, .bias). [in, out, k, k] as PyTorch keeps them.
  std::vector<at::Tensor> up_weights, up_biases;

 private:
  ClipSegConfig config_;
};
TORCH_MODULE(ClipSeg);

// A CLIPSeg folder as the hub ships it: config.json, model.safetensors (a pickle-only folder
// is an error that says how to convert it). Errors name the folder and what is wrong.
ClipSeg load_clipseg(const std::string& dir, const at::TensorOptions& options);

// The reference's mask from the logits of [prompt, ""] ([2, h, w]): 8-bit, h x w.
std::vector<uint8_t> clipseg_mask_from_logits(const at::Tensor& logits, double temperature);

}  // namespace xltune
