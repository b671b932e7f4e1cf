// SDXL's UNet2DConditionModel, built from unet/config.json with diffusers' module tree and key
// names (conv_in, time_embedding, add_embedding, down_blocks.i.{resnets,attentions,
// downsamplers}, mid_block, up_blocks.i.{resnets,attentions,upsamplers}, conv_norm_out,
// conv_out), so a diffusers state dict loads without renaming.
//
// forward(sample, timestep, context, text_embeds, time_ids) follows UNet2DConditionModel:
// emb = time_embedding(sinusoid(t)) + add_embedding([text_embeds, sinusoid(time_ids)]); the
// down path keeps every resnet/attention output as a skip; the up path concatenates them back.
//
// Note [Forward block hook]
// The forward runs in top-level blocks, numbered in the order it runs them: 0 the stem (time and
// add embeddings, conv_in), 1 .. n the down blocks, n + 1 the mid block, n + 2 .. 2n + 1 the up
// blocks, 2n + 2 the head (conv_norm_out, conv_out), for n levels. A hook set with
// set_before_block is called with each number before the block reads any of its parameters, and
// block_index_of names the block of each parameter, so that parameters can arrive while earlier
// blocks compute: ZeRO-1's all-gathers (Note [Sharded optimizer state]). libtorch modules have no
// forward pre-hooks; the blocks are ours. Gradient checkpointing's recomputation in backward
// calls no hook (the forward has waited for everything by then).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "core/layers.h"
#include "models/attention.h"
#include "models/embeddings.h"
#include "models/resnet.h"
#include "models/unet_config.h"

namespace xltune {

// One down or up block: resnets, optional attentions, optional down/upsampler.
class UNetBlockImpl : public torch::nn::Module {
 public:
  std::vector<ResnetBlock2D> resnets;
  std::vector<Transformer2DModel> attentions;
  Downsample2D downsampler{nullptr};
  Upsample2D upsampler{nullptr};
};
TORCH_MODULE(UNetBlock);

class UNetImpl : public torch::nn::Module {
 public:
  UNetImpl(const UNetConfig& config, const at::TensorOptions& options);

  // sample [B, in, H, W]; timestep [B] (or one value); context [B, L, cross_attention_dim];
  // text_embeds [B, text_embeds_dim] and time_ids [B, 6] when the config has text_time.
  at::Tensor forward(const at::Tensor& sample, const at::Tensor& timestep, const at::Tensor& context,
                     const at::Tensor& text_embeds = {}, const at::Tensor& time_ids = {});

  // Note [Forward block hook]: `hook(block)` before each block of every forward; null: none.
  void set_before_block(std::function<void(int block)> hook) { before_block_ = std::move(hook); }
  int block_count() const { return 2 * static_cast<int>(config_.block_out_channels.size()) + 3; }
  // The block whose forward reads the parameter `name` (as named_parameters() names it, e.g.
  // "down_blocks.1.resnets.0.conv1.weight"); 0 (the first) for a name of no block.
  int block_index_of(const std::string& name) const;

  // Recompute each resnet's and transformer block's activations in backward.
  void set_gradient_checkpointing(bool on) { recompute_ = on; }
  const UNetConfig& config() const { return config_; }

  nn::Conv2d conv_in{nullptr}, conv_out{nullptr};
  TimestepEmbedding time_embedding{nullptr}, add_embedding{nullptr};
  std::vector<UNetBlock> down_blocks, up_blocks;
  UNetBlock mid_block{nullptr};
  nn::GroupNorm conv_norm_out{nullptr};

 private:
  at::Tensor resnet(ResnetBlock2D& block, const at::Tensor& x, const at::Tensor& emb);
  void enter_block(int block) {
    if (before_block_) before_block_(block);
  }
  UNetConfig config_;
  bool recompute_ = false;
  std::function<void(int)> before_block_;
};
TORCH_MODULE(UNet);

}  // namespace xltune
