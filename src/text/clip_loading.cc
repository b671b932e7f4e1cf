#include "text/clip_loading.h"

#include <ATen/ATen.h>

#include <filesystem>

#include "core/check.h"
#include "core/safetensors.h"
#include "core/strings.h"

namespace xltune {

namespace {

void load_into(ClipTextModel& model, const TensorMap& map, const std::string& what) {
  load_module(*model, map, what);
}

}  // namespace

ClipTextConfig infer_clip_text_config(const TensorMap& map, bool with_projection, const std::string& what) {
  auto need = [&](const std::string& key) -> const TensorRef& {
    auto it = map.find(key);
    XLTUNE_CHECK(it != map.end(), what, ": no tensor '", key, "' to infer the config from");
    return it->second;
  };
  ClipTextConfig c;
  const auto& tok = need("text_model.embeddings.token_embedding.weight").shape;
  c.vocab_size = tok[0];
  c.hidden_size = tok[1];
  c.max_position_embeddings = need("text_model.embeddings.position_embedding.weight").shape[0];
  c.intermediate_size = need("text_model.encoder.layers.0.mlp.fc1.weight").shape[0];
  c.num_hidden_layers = 0;
  while (map.count("text_model.encoder.layers." + std::to_string(c.num_hidden_layers) + ".mlp.fc1.weight"))
    ++c.num_hidden_layers;
  XLTUNE_CHECK(c.hidden_size % 64 == 0, what, ": hidden size ", c.hidden_size,
               " is not a multiple of 64: give the config explicitly");
  c.num_attention_heads = c.hidden_size / 64;
  c.with_projection = with_projection;
  c.hidden_act = with_projection ? "gelu" : "quick_gelu";  // OpenCLIP-bigG : OpenAI CLIP-L
  if (with_projection) c.projection_dim = need("text_projection.weight").shape[0];
  return c;
}

TensorMap with_text_model_prefix(TensorMap map) {
  TensorMap out;
  for (auto& [key, ref] : map) {
    // Older transformers saved the position_ids buffer; it is arange(77), not a weight.
    if (key.size() >= 22 && key.compare(key.size() - 22, 22, "embeddings.position_ids") == 0) continue;
    bool prefixed = starts_with(key, "text_model.") || key == "text_projection.weight";
    out[prefixed ? key : "text_model." + key] = std::move(ref);
  }
  return out;
}

TensorMap open_clip_to_transformers(const TensorMap& oc, int64_t hidden) {
  TensorMap out;
  auto rename = [&](const std::string& from, const std::string& to) {
    auto it = oc.find(from);
    if (it != oc.end()) out[to] = it->second;
  };
  rename("token_embedding.weight", "text_model.embeddings.token_embedding.weight");
  rename("positional_embedding", "text_model.embeddings.position_embedding.weight");
  rename("ln_final.weight", "text_model.final_layer_norm.weight");
  rename("ln_final.bias", "text_model.final_layer_norm.bias");
  if (auto it = oc.find("text_projection"); it != oc.end()) {
    // open_clip computes x @ P; transformers' Linear holds Pᵀ.
    const TensorRef p = it->second;
    out["text_projection.weight"] = TensorRef{{p.shape.at(1), p.shape.at(0)},
                                              [p] { return p.load().t().contiguous(); }, p.origin + " (transposed)"};
  }
  for (int n = 0;; ++n) {
    const std::string from = "transformer.resblocks." + std::to_string(n) + ".";
    const std::string to = "text_model.encoder.layers." + std::to_string(n) + ".";
    if (!oc.count(from + "ln_1.weight")) break;
    for (const char* p : {"weight", "bias"}) {
      rename(from + "ln_1." + p, to + "layer_norm1." + p);
      rename(from + "ln_2." + p, to + "layer_norm2." + p);
      rename(from + "mlp.c_fc." + p, to + "mlp.fc1." + p);
      rename(from + "mlp.c_proj." + p, to + "mlp.fc2." + p);
      rename(from + "attn.out_proj." + p, to + "self_attn.out_proj." + p);
      // in_proj_{weight,bias} stacks q; k; v along the first dimension.
      auto fused = oc.find(from + "attn.in_proj_" + p);
      if (fused == oc.end()) continue;
      const TensorRef f = fused->second;
      const char* names[] = {"q_proj", "k_proj", "v_proj"};
      for (int64_t part = 0; part < 3; ++part) {
        std::vector<int64_t> shape = f.shape;
        XLTUNE_CHECK(!shape.empty() && shape[0] == 3 * hidden, f.origin, ": expected ", 3 * hidden,
                     " rows (q, k, v), got ", shape.empty() ? 0 : shape[0]);
        shape[0] = hidden;
        out[to + "self_attn." + names[part] + "." + p] =
            TensorRef{shape, [f, part, hidden] { return f.load().narrow(0, part * hidden, hidden).contiguous(); },
                      f.origin + " (" + names[part] + ")"};
      }
    }
  }
  // Anything else stays visible as unexpected, except logit_scale: CLIP's contrastive
  // temperature, which every SDXL single file carries and no text encoder uses.
  for (const auto& [key, ref] : oc) {
    bool known = key == "token_embedding.weight" || key == "positional_embedding" || starts_with(key, "ln_final.") ||
                 key == "text_projection" || key == "logit_scale" || starts_with(key, "transformer.resblocks.");
    if (!known) out["(open_clip) " + key] = ref;
  }
  return out;
}

ClipTextModel load_clip_text_model(const std::string& dir, const ModelLoadOptions& load) {
  ClipTextConfig config = ClipTextConfig::from_json_file(dir + "/config.json");
  const std::string weights = find_safetensors_weights(dir, load.variant);
  SafetensorsSet set(weights);
  ClipTextModel model(config, load.options);
  load_into(model, with_text_model_prefix(tensors_under(set, "")), weights);
  return model;
}

SdxlTextEncoders load_sdxl_text_encoders_from_single_file(const std::string& path, const ModelLoadOptions& load,
                                                          std::optional<ClipTextConfig> te1_config,
                                                          std::optional<ClipTextConfig> te2_config) {
  SafetensorsSet set(path);
  TensorMap te1_map = with_text_model_prefix(tensors_under(set, kSingleFileTe1Prefix));
  TensorMap te2_raw = tensors_under(set, kSingleFileTe2Prefix);
  XLTUNE_CHECK(!te1_map.empty(), path, ": no CLIP-L text encoder under '", kSingleFileTe1Prefix,
               "' (not an SDXL single-file checkpoint?)");
  XLTUNE_CHECK(te2_raw.count("token_embedding.weight"), path, ": no OpenCLIP-bigG text encoder under '",
               kSingleFileTe2Prefix, "' (not an SDXL single-file checkpoint?)");
  const int64_t hidden2 = te2_raw.at("token_embedding.weight").shape.at(1);
  TensorMap te2_map = open_clip_to_transformers(te2_raw, hidden2);

  SdxlTextEncoders out;
  ClipTextConfig c1 = te1_config ? *te1_config : infer_clip_text_config(te1_map, false, path + " (text encoder 1)");
  ClipTextConfig c2 = te2_config ? *te2_config : infer_clip_text_config(te2_map, true, path + " (text encoder 2)");
  out.te1 = ClipTextModel(c1, load.options);
  out.te2 = ClipTextModel(c2, load.options);
  load_into(out.te1, te1_map, path + " (text encoder 1)");
  load_into(out.te2, te2_map, path + " (text encoder 2)");
  return out;
}

}  // namespace xltune
