// The CLIP text encoders of SDXL, as transformers builds them from config.json:
//   CLIPTextModel               (text_encoder:   ViT-L/14,  quick_gelu, no projection)
//   CLIPTextModelWithProjection (text_encoder_2: ViT-bigG/14, gelu, text_projection)
// Modules are registered under transformers' key names ("text_model.encoder.layers.3.mlp.fc1"),
// so a state dict loads without renaming. Pre-LN transformer, causal self-attention through
// scaled_dot_product_attention, no attention mask (SDXL passes none).
//
// Pivotal tuning: add_new_tokens(n) grows the token table by n trainable rows, kept apart
// from the frozen table, so that the old rows cannot change (bit-identical after any number
// of steps) and only the new rows get gradients and optimizer state (Note [New token rows] in
// docs/design-notes.md).
#pragma once

#include <string>
#include <vector>

#include "core/layers.h"

namespace c10 {
enum class ScalarType : int8_t;
}

namespace xltune {

struct ClipTextConfig {
  int64_t vocab_size = 49408;
  int64_t hidden_size = 768;
  int64_t intermediate_size = 3072;
  int64_t num_hidden_layers = 12;
  int64_t num_attention_heads = 12;
  int64_t max_position_embeddings = 77;
  std::string hidden_act = "quick_gelu";  // or "gelu"
  double layer_norm_eps = 1e-5;
  bool with_projection = false;  // CLIPTextModelWithProjection
  int64_t projection_dim = 768;
  // The layers are shared with CLIPSeg's vision tower (prep/clipseg.h): no causal mask there.
  bool causal = true;

  // From a config.json: fields as transformers writes them; "architectures" decides
  // with_projection (CLIPTextModelWithProjection). Errors name the file and field.
  static ClipTextConfig from_json_file(const std::string& path);
  static ClipTextConfig from_json_text(const std::string& text, const std::string& source);
};

struct ClipTextOutput {
  std::vector<at::Tensor> hidden_states;  // embeddings, then each layer (when asked for)
  at::Tensor penultimate;                 // hidden_states[-2]: what SDXL's UNet conditions on
  at::Tensor last_hidden_state;           // after final_layer_norm
  at::Tensor pooled;                      // last_hidden_state at each row's first end-of-text token
  at::Tensor text_embeds;                 // text_projection(pooled), with projection only
};

class ClipTokenEmbeddingImpl : public torch::nn::Module {
 public:
  ClipTokenEmbeddingImpl(int64_t count, int64_t dim, const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& ids);
  int64_t base_count() const { return weight.size(0); }
  int64_t new_count() const { return new_rows.defined() ? new_rows.size(0) : 0; }
  at::Tensor weight;    // the file's table: frozen once new tokens exist
  at::Tensor new_rows;  // [n, dim] fp32, trainable; undefined until add_new_tokens
};
TORCH_MODULE(ClipTokenEmbedding);

class ClipAttentionImpl : public torch::nn::Module {
 public:
  ClipAttentionImpl(const ClipTextConfig& c, const at::TensorOptions& o);
  at::Tensor forward(const at::Tensor& x);
  nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, out_proj{nullptr};
  int64_t heads;
  bool causal;
};
TORCH_MODULE(ClipAttention);

class ClipMlpImpl : public torch::nn::Module {
 public:
  ClipMlpImpl(const ClipTextConfig& c, const at::TensorOptions& o);
  at::Tensor forward(const at::Tensor& x);
  nn::Linear fc1{nullptr}, fc2{nullptr};
  std::string act;  // quick_gelu, gelu or relu (CLIPSeg's decoder)
};
TORCH_MODULE(ClipMlp);

class ClipEncoderLayerImpl : public torch::nn::Module {
 public:
  ClipEncoderLayerImpl(const ClipTextConfig& c, const at::TensorOptions& o);
  at::Tensor forward(const at::Tensor& x);
  ClipAttention self_attn{nullptr};
  nn::LayerNorm layer_norm1{nullptr}, layer_norm2{nullptr};
  ClipMlp mlp{nullptr};
};
TORCH_MODULE(ClipEncoderLayer);

class ClipTextModelImpl : public torch::nn::Module {
 public:
  // Parameters are allocated, not initialised (see core/layers.h); on options' device.
  ClipTextModelImpl(const ClipTextConfig& config, const at::TensorOptions& options);

  // ids [B, L] int64, L <= max_position_embeddings. Pooling (Note [Pooling at the first
  // end-of-text token] in docs/design-notes.md) is at the first end-of-text
  // token (49407) of each row, not at argmax(ids), which new tokens (>= 49408) would break.
  ClipTextOutput forward(const at::Tensor& ids, bool all_hidden_states = false);

  // Grows the token table by `count` trainable fp32 rows (ids vocab_size ...), initialised as
  // the reference trainer does: standard normal from `generator` (a CPU generator) times the
  // std of the old table.
  // The old table stops requiring gradients. Returns the new rows' parameter.
  at::Tensor add_new_tokens(int64_t count, at::Generator generator);

  const ClipTextConfig& config() const { return config_; }
  ClipTokenEmbedding token_embedding{nullptr};
  nn::Embedding position_embedding{nullptr};
  std::vector<ClipEncoderLayer> layers;
  nn::LayerNorm final_layer_norm{nullptr};
  nn::Linear text_projection{nullptr};
  int64_t eos_token_id = 49407;

 private:
  ClipTextConfig config_;
};
TORCH_MODULE(ClipTextModel);

}  // namespace xltune
