#include "models/unet.h"

#include <ATen/ATen.h>
#include <torch/nn/modules/container/modulelist.h>

#include <cstring>

#include "core/check.h"
#include "core/recompute.h"

namespace xltune {

UNetImpl::UNetImpl(const UNetConfig& c, const at::TensorOptions& o) : config_(c) {
  const auto& ch = c.block_out_channels;
  const size_t n = ch.size();
  const int64_t temb = c.time_embed_dim();
  conv_in = register_module("conv_in", nn::Conv2d(c.in_channels, ch[0], 3, 1, 1, o));
  time_embedding = register_module("time_embedding", TimestepEmbedding(ch[0], temb, o));
  if (c.text_time) {
    add_embedding = register_module("add_embedding", TimestepEmbedding(c.projection_class_embeddings_input_dim, temb, o));
  }

  // Down path.
  int64_t out_ch = ch[0];
  for (size_t i = 0; i < n; ++i) {
    const int64_t in_ch = out_ch;
    out_ch = ch[i];
    UNetBlock block;
    const bool cross = c.down_block_types[i] == "CrossAttnDownBlock2D";
    for (int64_t j = 0; j < c.layers_per_block[i]; ++j) {
      block->resnets.push_back(ResnetBlock2D(j == 0 ? in_ch : out_ch, out_ch, temb, c.norm_num_groups, c.norm_eps, o));
      if (cross) {
        block->attentions.push_back(Transformer2DModel(out_ch, c.num_attention_heads[i], c.transformer_layers_per_block[i],
                                                       c.cross_attention_dim[i], c.norm_num_groups,
                                                       c.use_linear_projection, o));
      }
    }
    nn::register_list(*block, "resnets", block->resnets);
    nn::register_list(*block, "attentions", block->attentions);
    if (i + 1 < n) {
      block->downsampler = Downsample2D(out_ch, 1, o);
      nn::register_list(*block, "downsamplers", std::vector<Downsample2D>{block->downsampler});
    }
    down_blocks.push_back(block);
  }
  nn::register_list(*this, "down_blocks", down_blocks);

  // Mid block: resnet, then (attention, resnet) once; depth of the last level.
  mid_block = UNetBlock();
  mid_block->resnets.push_back(ResnetBlock2D(ch[n - 1], ch[n - 1], temb, c.norm_num_groups, c.norm_eps, o));
  mid_block->attentions.push_back(Transformer2DModel(ch[n - 1], c.num_attention_heads[n - 1],
                                                     c.transformer_layers_per_block[n - 1], c.cross_attention_dim[n - 1],
                                                     c.norm_num_groups, c.use_linear_projection, o));
  mid_block->resnets.push_back(ResnetBlock2D(ch[n - 1], ch[n - 1], temb, c.norm_num_groups, c.norm_eps, o));
  nn::register_list(*mid_block, "attentions", mid_block->attentions);
  nn::register_list(*mid_block, "resnets", mid_block->resnets);
  register_module("mid_block", mid_block);

  // Up path: levels reversed; each block has one resnet more than its down block, and each
  // resnet takes the previous output concatenated with a skip connection.
  out_ch = ch[n - 1];
  for (size_t i = 0; i < n; ++i) {
    const size_t level = n - 1 - i;
    const int64_t prev_out = out_ch;
    out_ch = ch[level];
    const int64_t in_ch = ch[level == 0 ? 0 : level - 1];
    const int64_t layers = c.layers_per_block[level] + 1;
    const bool cross = c.up_block_types[i] == "CrossAttnUpBlock2D";
    UNetBlock block;
    for (int64_t j = 0; j < layers; ++j) {
      const int64_t skip_ch = j == layers - 1 ? in_ch : out_ch;
      const int64_t res_in = j == 0 ? prev_out : out_ch;
      block->resnets.push_back(ResnetBlock2D(res_in + skip_ch, out_ch, temb, c.norm_num_groups, c.norm_eps, o));
      if (cross) {
        block->attentions.push_back(Transformer2DModel(out_ch, c.num_attention_heads[level],
                                                       c.reverse_transformer_layers_per_block[i],
                                                       c.cross_attention_dim[level], c.norm_num_groups,
                                                       c.use_linear_projection, o));
      }
    }
    nn::register_list(*block, "resnets", block->resnets);
    nn::register_list(*block, "attentions", block->attentions);
    if (i + 1 < n) {
      block->upsampler = Upsample2D(out_ch, o);
      nn::register_list(*block, "upsamplers", std::vector<Upsample2D>{block->upsampler});
    }
    up_blocks.push_back(block);
  }
  nn::register_list(*this, "up_blocks", up_blocks);

  conv_norm_out = register_module("conv_norm_out", nn::GroupNorm(c.norm_num_groups, ch[0], c.norm_eps, o));
  conv_out = register_module("conv_out", nn::Conv2d(ch[0], c.out_channels, 3, 1, 1, o));
}

int UNetImpl::block_index_of(const std::string& name) const {
  const int n = static_cast<int>(config_.block_out_channels.size());
  const auto starts = [&](const char* prefix) { return name.compare(0, std::strlen(prefix), prefix) == 0; };
  // "<list>.<i>.": block first + i.
  const auto listed = [&](const char* list, int first) {
    const size_t at = std::strlen(list);
    const size_t dot = name.find('.', at);
    if (dot == std::string::npos || dot == at) return 0;
    int i = 0;
    for (size_t k = at; k < dot; ++k) {
      if (name[k] < '0' || name[k] > '9') return 0;
      i = 10 * i + (name[k] - '0');
    }
    return i < n ? first + i : 0;
  };
  if (starts("down_blocks.")) return listed("down_blocks.", 1);
  if (starts("mid_block.")) return n + 1;
  if (starts("up_blocks.")) return listed("up_blocks.", n + 2);
  if (starts("conv_norm_out.") || starts("conv_out.")) return 2 * n + 2;
  return 0;  // conv_in, time_embedding, add_embedding: the stem
}

at::Tensor UNetImpl::resnet(ResnetBlock2D& block, const at::Tensor& x, const at::Tensor& emb) {
  if (!recompute_) return block->forward(x, emb);
  auto impl = block.ptr();
  return recompute_in_backward([impl](const at::Tensor& h, const at::Tensor& e) { return impl->forward(h, e); }, x, emb);
}

at::Tensor UNetImpl::forward(const at::Tensor& sample, const at::Tensor& timestep, const at::Tensor& context,
                             const at::Tensor& text_embeds, const at::Tensor& time_ids) {
  const auto& c = config_;
  XLTUNE_CHECK(sample.dim() == 4 && sample.size(1) == c.in_channels, "UNet: expected sample [B, ", c.in_channels,
               ", H, W], got ", sample.sizes());
  const int64_t b = sample.size(0);
  XLTUNE_CHECK(context.dim() == 3 && context.size(0) == b, "UNet: expected context [", b, ", L, D], got ", context.sizes());
  const int64_t levels = static_cast<int64_t>(c.block_out_channels.size());
  const int64_t factor = int64_t{1} << (levels - 1);
  XLTUNE_CHECK(sample.size(2) % factor == 0 && sample.size(3) % factor == 0, "UNet: sample height and width must be ",
               "multiples of ", factor, ", got ", sample.size(2), "x", sample.size(3));

  // Time (and SDXL's size/crop) conditioning. Note [Forward block hook]: block 0, the stem.
  const int n = static_cast<int>(levels);
  enter_block(0);
  at::Tensor t = timestep.expand({b});  // one value for the batch, or one per sample
  at::Tensor emb = time_embedding(timestep_sinusoid(t, c.block_out_channels[0], c.flip_sin_to_cos, c.freq_shift)
                                      .to(sample.scalar_type()));
  if (c.text_time) {
    XLTUNE_CHECK(text_embeds.defined() && time_ids.defined(), "UNet: this model conditions on text_embeds and time_ids");
    XLTUNE_CHECK(text_embeds.dim() == 2 && text_embeds.size(1) == c.text_embeds_dim(), "UNet: expected text_embeds [B, ",
                 c.text_embeds_dim(), "], got ", text_embeds.sizes());
    XLTUNE_CHECK(time_ids.dim() == 2 && time_ids.size(1) == 6, "UNet: expected time_ids [B, 6], got ", time_ids.sizes());
    at::Tensor time_embeds = timestep_sinusoid(time_ids.flatten(), c.addition_time_embed_dim, c.flip_sin_to_cos,
                                               c.freq_shift)
                                 .reshape({b, -1});
    at::Tensor add = at::cat({text_embeds, time_embeds.to(text_embeds.scalar_type())}, -1).to(emb.scalar_type());
    emb = emb + add_embedding(add);
  }

  at::Tensor h = conv_in(sample);
  std::vector<at::Tensor> skips{h};
  for (size_t i = 0; i < down_blocks.size(); ++i) {
    auto& block = down_blocks[i];
    enter_block(1 + static_cast<int>(i));
    for (size_t j = 0; j < block->resnets.size(); ++j) {
      h = resnet(block->resnets[j], h, emb);
      if (!block->attentions.empty()) h = block->attentions[j]->forward(h, context, recompute_);
      skips.push_back(h);
    }
    if (block->downsampler) {
      h = block->downsampler(h);
      skips.push_back(h);
    }
  }

  enter_block(n + 1);
  h = resnet(mid_block->resnets[0], h, emb);
  h = mid_block->attentions[0]->forward(h, context, recompute_);
  h = resnet(mid_block->resnets[1], h, emb);

  for (size_t i = 0; i < up_blocks.size(); ++i) {
    auto& block = up_blocks[i];
    enter_block(n + 2 + static_cast<int>(i));
    for (size_t j = 0; j < block->resnets.size(); ++j) {
      at::Tensor skip = skips.back();
      skips.pop_back();
      h = resnet(block->resnets[j], at::cat({h, skip}, 1), emb);
      if (!block->attentions.empty()) h = block->attentions[j]->forward(h, context, recompute_);
    }
    // Upsample to the size of the skip connection the next block starts with.
    if (block->upsampler) h = block->upsampler(h, skips.back().sizes().slice(2));
  }
  enter_block(2 * n + 2);
  return conv_out(at::silu(conv_norm_out(h)));
}

}  // namespace xltune
