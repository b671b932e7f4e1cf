#include "models/sgm_keys.h"

#include <ATen/ATen.h>

#include <cstring>

#include "core/check.h"
#include "core/strings.h"
#include "models/unet.h"

namespace xltune {

namespace {

// Replaces the leading `from` of key with `to` if it matches.
bool swap_prefix(std::string& key, const std::string& from, const std::string& to) {
  if (!starts_with(key, from)) return false;
  key = to + key.substr(from.size());
  return true;
}

std::string sgm_resnet_suffix(const std::string& rest) {
  static const std::pair<const char*, const char*> kNames[] = {
      {"norm1.", "in_layers.0."},         {"conv1.", "in_layers.2."},       {"time_emb_proj.", "emb_layers.1."},
      {"norm2.", "out_layers.0."},        {"conv2.", "out_layers.3."},      {"conv_shortcut.", "skip_connection."}};
  for (const auto& [from, to] : kNames)
    if (starts_with(rest, from)) return to + rest.substr(std::strlen(from));
  XLTUNE_FAIL("internal: no SGM name for resnet parameter '", rest, "'");
}

}  // namespace

std::map<std::string, std::string> sgm_unet_keys(const UNetConfig& c) {
  // The block -> SGM index table, walked in the same order as the model is built.
  std::map<std::string, std::string> block_map;  // "down_blocks.1.resnets.0." -> "input_blocks.4.0."
  const size_t n = c.block_out_channels.size();
  int index = 1;
  for (size_t i = 0; i < n; ++i) {
    const std::string down = "down_blocks." + std::to_string(i) + ".";
    const bool cross = c.down_block_types[i] == "CrossAttnDownBlock2D";
    for (int64_t j = 0; j < c.layers_per_block[i]; ++j, ++index) {
      block_map[down + "resnets." + std::to_string(j) + "."] = "input_blocks." + std::to_string(index) + ".0.";
      if (cross) block_map[down + "attentions." + std::to_string(j) + "."] = "input_blocks." + std::to_string(index) + ".1.";
    }
    if (i + 1 < n) block_map[down + "downsamplers.0.conv."] = "input_blocks." + std::to_string(index++) + ".0.op.";
  }
  index = 0;
  for (size_t i = 0; i < n; ++i) {
    const std::string up = "up_blocks." + std::to_string(i) + ".";
    const bool cross = c.up_block_types[i] == "CrossAttnUpBlock2D";
    const int64_t layers = c.layers_per_block[n - 1 - i] + 1;
    for (int64_t j = 0; j < layers; ++j, ++index) {
      block_map[up + "resnets." + std::to_string(j) + "."] = "output_blocks." + std::to_string(index) + ".0.";
      if (cross) block_map[up + "attentions." + std::to_string(j) + "."] = "output_blocks." + std::to_string(index) + ".1.";
      if (j == layers - 1 && i + 1 < n)
        block_map[up + "upsamplers.0.conv."] = "output_blocks." + std::to_string(index) + (cross ? ".2" : ".1") + ".conv.";
    }
  }
  block_map["mid_block.resnets.0."] = "middle_block.0.";
  block_map["mid_block.attentions.0."] = "middle_block.1.";
  block_map["mid_block.resnets.1."] = "middle_block.2.";

  std::map<std::string, std::string> out;
  UNet model(c, at::TensorOptions().device(at::kMeta));
  for (const auto& p : model->named_parameters()) {
    std::string key = p.key();
    std::string sgm = key;
    if (swap_prefix(sgm, "conv_in.", "input_blocks.0.0.") || swap_prefix(sgm, "time_embedding.linear_1.", "time_embed.0.") ||
        swap_prefix(sgm, "time_embedding.linear_2.", "time_embed.2.") ||
        swap_prefix(sgm, "add_embedding.linear_1.", "label_emb.0.0.") ||
        swap_prefix(sgm, "add_embedding.linear_2.", "label_emb.0.2.") || swap_prefix(sgm, "conv_norm_out.", "out.0.") ||
        swap_prefix(sgm, "conv_out.", "out.2.")) {
      out[key] = sgm;
      continue;
    }
    bool done = false;
    for (const auto& [from, to] : block_map) {
      if (!starts_with(key, from)) continue;
      const std::string rest = key.substr(from.size());
      out[key] = to + (from.find(".resnets.") != std::string::npos ? sgm_resnet_suffix(rest) : rest);
      done = true;
      break;
    }
    XLTUNE_CHECK(done, "internal: no SGM name for UNet parameter '", key, "'");
  }
  return out;
}

std::map<std::string, std::string> sgm_vae_keys(const VaeConfig& c) {
  const size_t n = c.block_out_channels.size();
  std::map<std::string, std::string> block_map;
  for (size_t i = 0; i < n; ++i) {
    const std::string d = "encoder.down_blocks." + std::to_string(i) + ".";
    const std::string sd = "encoder.down." + std::to_string(i) + ".";
    for (int64_t j = 0; j < c.layers_per_block; ++j) block_map[d + "resnets." + std::to_string(j) + "."] = sd + "block." + std::to_string(j) + ".";
    block_map[d + "downsamplers.0.conv."] = sd + "downsample.conv.";
    const std::string u = "decoder.up_blocks." + std::to_string(i) + ".";
    const std::string su = "decoder.up." + std::to_string(n - 1 - i) + ".";
    for (int64_t j = 0; j < c.layers_per_block + 1; ++j) block_map[u + "resnets." + std::to_string(j) + "."] = su + "block." + std::to_string(j) + ".";
    block_map[u + "upsamplers.0.conv."] = su + "upsample.conv.";
  }
  for (const char* coder : {"encoder.", "decoder."}) {
    const std::string k = coder;
    block_map[k + "mid_block.resnets.0."] = k + "mid.block_1.";
    block_map[k + "mid_block.resnets.1."] = k + "mid.block_2.";
    block_map[k + "mid_block.attentions.0.group_norm."] = k + "mid.attn_1.norm.";
    block_map[k + "mid_block.attentions.0.to_q."] = k + "mid.attn_1.q.";
    block_map[k + "mid_block.attentions.0.to_k."] = k + "mid.attn_1.k.";
    block_map[k + "mid_block.attentions.0.to_v."] = k + "mid.attn_1.v.";
    block_map[k + "mid_block.attentions.0.to_out.0."] = k + "mid.attn_1.proj_out.";
    block_map[k + "conv_norm_out."] = k + "norm_out.";
  }
  std::map<std::string, std::string> out;
  Vae model(c, at::TensorOptions().device(at::kMeta));
  for (const auto& p : model->named_parameters()) {
    const std::string key = p.key();
    std::string sgm = key;
    for (const auto& [from, to] : block_map) {
      if (!starts_with(key, from)) continue;
      std::string rest = key.substr(from.size());
      if (from.find("resnets.") != std::string::npos) swap_prefix(rest, "conv_shortcut.", "nin_shortcut.");
      sgm = to + rest;
      break;
    }
    out[key] = sgm;
  }
  return out;
}

}  // namespace xltune
