// BLIP (Li et al. 2022) captioning, transformers' BlipForConditionalGeneration, for the
// reference trainer's captions (Salesforce/blip-image-captioning-large). Modules are registered
// under transformers' key names, so model.safetensors loads without renaming:
//   vision_model.*   ViT: patch conv (with bias), class embedding [1, 1, D], position embedding
//                    [1, 1 + patches, D] (a parameter), pre-LN layers with a fused qkv and
//                    `projection`, post_layernorm. Its last hidden state is what the decoder
//                    attends to.
//   text_decoder.*   BERT (post-LN) with a causal self-attention, a cross-attention to the image
//                    in every layer, and the MLM head (cls.predictions.transform, the output
//                    matrix tied to bert.embeddings.word_embeddings, cls.predictions.bias).
//
// Decoding runs one token at a time on a cache (Note [BLIP's decoding cache]): each layer's
// cross-attention keys and values of the image are computed once, its self-attention keys and
// values grow by a row per step; beams reorder the rows.
//
// Note [BLIP's decoding cache]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// transformers recomputes nothing either (an EncoderDecoderCache), so the step's arithmetic is
// the same: position ids continue from the cache's length, a new token attends to every cached
// one and to itself. Attention is computed as BERT's code does it (scores = q kᵀ / sqrt(d) +
// mask, softmax, times v) rather than with a fused kernel, so that greedy and beam search pick
// the same tokens as transformers, not merely logits within rounding. The captions are short
// (at most 150 tokens against 577 image tokens), so this costs little.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

#include "core/layers.h"

namespace xltune {

struct BlipVisionConfig {
  int64_t hidden_size = 768, intermediate_size = 3072, num_hidden_layers = 12, num_attention_heads = 12;
  int64_t image_size = 384, patch_size = 16;
  std::string hidden_act = "gelu";
  double layer_norm_eps = 1e-5;
};

struct BlipTextConfig {
  int64_t vocab_size = 30524, hidden_size = 768, encoder_hidden_size = 768, intermediate_size = 3072;
  int64_t num_hidden_layers = 12, num_attention_heads = 8, max_position_embeddings = 512;
  std::string hidden_act = "gelu";
  double layer_norm_eps = 1e-12;
  int64_t bos_token_id = 30522;  // [DEC]: the first token of every caption
  int64_t pad_token_id = 0;
  int64_t sep_token_id = 102;  // [SEP]: ends a caption (generate's eos)
};

struct BlipConfig {
  BlipVisionConfig vision;
  BlipTextConfig text;
  // config.json as transformers writes it (text_config, vision_config; transformers' defaults
  // for what is missing; the text tower's encoder_hidden_size is the vision hidden size, as
  // BlipConfig sets it). Errors name the file and field.
  static BlipConfig from_json_text(const std::string& text, const std::string& source);
};

// One decoder's state while generating: per layer, self-attention keys/values so far and the
// image's cross-attention keys/values, [rows, heads, tokens, head_dim].
struct BlipDecoderCache {
  std::vector<at::Tensor> self_keys, self_values, cross_keys, cross_values;
  int64_t length() const { return self_keys.empty() || !self_keys[0].defined() ? 0 : self_keys[0].size(2); }
  // Keeps rows `rows` (int64 indices), in that order: beams that continue from other beams.
  void select_rows(const at::Tensor& rows);
};

class BlipImpl : public torch::nn::Module {
 public:
  // Parameters allocated, not initialised; on options' device.
  BlipImpl(const BlipConfig& config, const at::TensorOptions& options);

  // pixels [B, 3, S, S] normalised (image_processor.h) at the config's image size: the vision
  // tower's last hidden state [B, 1 + patches, D].
  at::Tensor image_embeds(const at::Tensor& pixels);
  // A cache for decoding captions of `image_embeds` (one row per image, or per beam).
  BlipDecoderCache start_decoding(const at::Tensor& image_embeds);
  // ids [rows, T] continue the cached tokens: logits [rows, T, vocab] (fp32), the cache extended.
  at::Tensor decode(const at::Tensor& ids, BlipDecoderCache& cache);
  // Teacher-forced logits of whole sequences [B, T] for the images (transformers' forward).
  at::Tensor logits(const at::Tensor& pixels, const at::Tensor& ids);

  const BlipConfig& config() const { return config_; }

  struct VisionLayer {
    nn::LayerNorm layer_norm1{nullptr}, layer_norm2{nullptr};
    nn::Linear qkv{nullptr}, projection{nullptr}, fc1{nullptr}, fc2{nullptr};
  };
  struct BertAttention {  // attention.self.{query,key,value}, attention.output.{dense,LayerNorm}
    nn::Linear query{nullptr}, key{nullptr}, value{nullptr}, dense{nullptr};
    nn::LayerNorm layer_norm{nullptr};
  };
  struct TextLayer {
    BertAttention self_attention, cross_attention;
    nn::Linear intermediate{nullptr}, output{nullptr};
    nn::LayerNorm output_norm{nullptr};
  };

  nn::Conv2d patch_embedding{nullptr};
  at::Tensor class_embedding, position_embedding;
  std::vector<VisionLayer> vision_layers;
  nn::LayerNorm post_layernorm{nullptr};
  nn::Embedding word_embeddings{nullptr}, position_embeddings{nullptr};
  nn::LayerNorm embeddings_norm{nullptr};
  std::vector<TextLayer> text_layers;
  nn::Linear transform{nullptr};
  nn::LayerNorm transform_norm{nullptr};
  at::Tensor output_bias;  // cls.predictions.bias; the output matrix is word_embeddings.weight

 private:
  BlipConfig config_;
};
TORCH_MODULE(Blip);

// A BLIP folder as the hub ships it: config.json, model.safetensors (a pickle-only folder is an
// error that says how to convert it). Errors name the folder and what is wrong.
Blip load_blip(const std::string& dir, const at::TensorOptions& options);

}  // namespace xltune
