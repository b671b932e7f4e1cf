#include "job/training_set.h"

#include <ATen/ATen.h>

#include <chrono>
#include <cmath>
#include <map>

#include "core/check.h"
#include "core/keyed_random.h"
#include "core/log.h"
#include "job/tokenizers.h"
#include "models/vae.h"

namespace xltune {

std::vector<float> size_conditioning(const ShardSample& s, int resolution) {
  const double short_side = std::min(s.original_height, s.original_width);
  const double scale = short_side > 0 ? resolution / short_side : 1.0;
  return {static_cast<float>(s.original_height), static_cast<float>(s.original_width),
          static_cast<float>(std::lround(s.crop_top * scale)), static_cast<float>(std::lround(s.crop_left * scale)),
          static_cast<float>(resolution), static_cast<float>(resolution)};
}

TrainingTokenizers load_training_tokenizers(const SdxlModel& model, const std::string& model_path) {
  TrainingTokenizers t{load_tokenizer(model.tokenizer_dir_1, "<|endoftext|>"), load_tokenizer(model.tokenizer_dir_2, "!")};
  const std::vector<std::string> new_tokens{"<s0>", "<s1>"};
  const auto ids_1 = t.first.add_tokens(new_tokens), ids_2 = t.second.add_tokens(new_tokens);
  for (int i = 0; i < 2; ++i) {
    XLTUNE_CHECK(ids_1[i] == model.te1->config().vocab_size + i && ids_2[i] == model.te2->config().vocab_size + i,
                 "--model ", model_path, ": the tokenizers have ", t.first.size() - 2, " and ", t.second.size() - 2,
                 " tokens but the text encoders ", model.te1->config().vocab_size, " and ",
                 model.te2->config().vocab_size);
  }
  return t;
}

LatentCache encode_latents(const ShardSet& shards, Vae& vae, const std::vector<uint64_t>& indices,
                           const LatentCacheKey& key, int64_t batch_size) {
  at::NoGradGuard no_grad;
  const int R = shards.info().resolution;
  const at::Device device = vae->encoder->conv_in->weight.device();
  const auto dtype = vae->encoder->conv_in->weight.scalar_type();
  LatentCache cache;
  cache.key = key;
  cache.scaling_factor = vae->config().scaling_factor;
  const auto start = std::chrono::steady_clock::now();
  auto last_log = start;
  for (size_t first = 0; first < indices.size(); first += static_cast<size_t>(batch_size)) {
    const size_t n = std::min(indices.size() - first, static_cast<size_t>(batch_size));
    std::vector<at::Tensor> images;
    for (size_t i = 0; i < n; ++i) {
      ShardSample s = shards.read(indices[first + i]);
      at::Tensor pixels = at::from_blob(s.image.data(), {R, R, 3}, at::kByte).clone();
      // uint8 HWC -> [-1, 1] CHW, as diffusers' ToTensor + Normalize([0.5], [0.5]).
      images.push_back((pixels.permute({2, 0, 1}).to(at::kFloat) / 255.0 - 0.5) / 0.5);
    }
    LatentDistribution d = vae->encode(at::stack(images).to(device, dtype));
    at::Tensor mean = d.mean.to(at::kCPU, at::kFloat).contiguous(), logvar = d.logvar.to(at::kCPU, at::kFloat).contiguous();
    cache.channels = mean.size(1);
    cache.height = mean.size(2);
    cache.width = mean.size(3);
    cache.mean.insert(cache.mean.end(), mean.data_ptr<float>(), mean.data_ptr<float>() + mean.numel());
    cache.logvar.insert(cache.logvar.end(), logvar.data_ptr<float>(), logvar.data_ptr<float>() + logvar.numel());
    const auto now = std::chrono::steady_clock::now();
    if (first + n == indices.size() || now - last_log > std::chrono::seconds(5)) {
      last_log = now;
      log_info("encoded ", first + n, " of ", indices.size(), " images into latents (",
               std::chrono::duration<double>(now - start).count(), " s)");
    }
  }
  return cache;
}

TrainingSet build_training_set(const ShardSet& shards, const LatentCache& latents, const ClipTokenizer& tokenizer_1,
                               const ClipTokenizer& tokenizer_2, at::Device device) {
  const auto& indices = latents.key.samples;
  const int64_t n = static_cast<int64_t>(indices.size());
  const int R = shards.info().resolution;
  XLTUNE_CHECK(n > 0, "training set: no samples");
  const int64_t c = latents.channels, h = latents.height, w = latents.width;
  XLTUNE_CHECK(R == h * (R / h) && R / h == R / w, "training set: latents of ", h, "x", w, " for images of ", R, " px");
  TrainingSet set;
  const auto f32 = at::TensorOptions().dtype(at::kFloat);
  set.mean = at::from_blob(const_cast<float*>(latents.mean.data()), {n, c, h, w}, f32).clone().to(device);
  set.logvar = at::from_blob(const_cast<float*>(latents.logvar.data()), {n, c, h, w}, f32).clone().to(device);
  std::vector<at::Tensor> masks;
  std::vector<int64_t> ids_1, ids_2;
  std::vector<float> time_ids;
  std::map<std::pair<std::vector<int64_t>, std::vector<int64_t>>, int64_t> keys;
  for (int64_t i = 0; i < n; ++i) {
    ShardSample s = shards.read(indices[i]);
    // The reference: mask / 255 at the image size, then nearest-neighbour down to the latents.
    at::Tensor m = at::from_blob(s.mask.data(), {1, 1, R, R}, at::kByte).to(at::kFloat) / 255.0;
    masks.push_back(at::upsample_nearest2d(m, {h, w}).squeeze(0));
    std::vector<int64_t> a = tokenizer_1.encode(s.caption), b = tokenizer_2.encode(s.caption);
    ids_1.insert(ids_1.end(), a.begin(), a.end());
    ids_2.insert(ids_2.end(), b.begin(), b.end());
    auto it = keys.emplace(std::make_pair(a, b), i).first;
    set.caption_keys.push_back(it->second);
    std::vector<float> t = size_conditioning(s, R);
    time_ids.insert(time_ids.end(), t.begin(), t.end());
    set.captions.push_back(s.caption);
    set.sources.push_back(s.source);
    set.shard_samples.push_back(static_cast<int64_t>(indices[i]));
  }
  const int64_t L = static_cast<int64_t>(ClipTokenizer::kContextLength);
  {
    std::vector<int64_t> a = tokenizer_1.encode(""), b = tokenizer_2.encode("");
    set.empty_ids_1 = at::tensor(a, at::kLong).to(device);
    set.empty_ids_2 = at::tensor(b, at::kLong).to(device);
    auto it = keys.find(std::make_pair(a, b));
    set.empty_caption_key = it != keys.end() ? it->second : n;  // keys are sample indices: n is free
  }
  set.mask = at::stack(masks).to(device);
  set.input_ids_1 = at::tensor(ids_1, at::kLong).view({n, L}).to(device);
  set.input_ids_2 = at::tensor(ids_2, at::kLong).view({n, L}).to(device);
  set.add_time_ids = at::tensor(time_ids, at::kFloat).view({n, 6}).to(device);
  log_info("training set: ", n, " samples, ", keys.size(), " distinct captions, latents ", c, "x", h, "x", w);
  return set;
}

StepBatch TrainingSet::batch(const std::vector<uint64_t>& indices, const std::vector<int64_t>& positions) const {
  std::vector<int64_t> rows(indices.begin(), indices.end());
  at::Tensor index = at::tensor(rows, at::kLong).to(mean.device());
  StepBatch b;
  b.latent_mean = mean.index_select(0, index);
  b.latent_logvar = logvar.index_select(0, index);
  b.mask = mask.index_select(0, index);
  b.input_ids_1 = input_ids_1.index_select(0, index);
  b.input_ids_2 = input_ids_2.index_select(0, index);
  b.add_time_ids = add_time_ids.index_select(0, index);
  b.positions = positions;
  for (auto i : indices) b.caption_keys.push_back(caption_keys.at(i));
  return b;
}

TrainingSet TrainingSet::subset(const std::vector<int64_t>& rows) const {
  const at::Tensor index = at::tensor(rows, at::kLong).to(mean.device());
  TrainingSet out;
  out.mean = mean.index_select(0, index);
  out.logvar = logvar.index_select(0, index);
  out.mask = mask.index_select(0, index);
  out.input_ids_1 = input_ids_1.index_select(0, index);
  out.input_ids_2 = input_ids_2.index_select(0, index);
  out.add_time_ids = add_time_ids.index_select(0, index);
  for (int64_t r : rows) {
    const auto i = static_cast<size_t>(r);
    out.caption_keys.push_back(caption_keys.at(i));  // keys stay the whole set's: one text cache
    out.captions.push_back(captions.at(i));
    out.sources.push_back(sources.at(i));
    out.shard_samples.push_back(shard_samples.at(i));
  }
  out.empty_ids_1 = empty_ids_1;
  out.empty_ids_2 = empty_ids_2;
  out.empty_caption_key = empty_caption_key;
  return out;
}

StepBatch concatenated(const std::vector<StepBatch>& batches) {
  if (batches.size() == 1) return batches.front();
  StepBatch out;
  const auto cat = [&](at::Tensor StepBatch::*field) {
    std::vector<at::Tensor> parts;
    for (const auto& b : batches) parts.push_back(b.*field);
    return at::cat(parts);
  };
  out.latent_mean = cat(&StepBatch::latent_mean);
  out.latent_logvar = cat(&StepBatch::latent_logvar);
  out.input_ids_1 = cat(&StepBatch::input_ids_1);
  out.input_ids_2 = cat(&StepBatch::input_ids_2);
  out.add_time_ids = cat(&StepBatch::add_time_ids);
  out.mask = cat(&StepBatch::mask);
  for (const auto& b : batches) {
    out.positions.insert(out.positions.end(), b.positions.begin(), b.positions.end());
    out.caption_keys.insert(out.caption_keys.end(), b.caption_keys.begin(), b.caption_keys.end());
  }
  return out;
}

int64_t TrainingSet::drop_captions(StepBatch& batch, uint64_t seed, int64_t step, double rate) const {
  if (rate <= 0) return 0;
  int64_t dropped = 0;
  for (size_t i = 0; i < batch.positions.size(); ++i) {
    at::Generator g = keyed_generator(seed, static_cast<uint64_t>(step), static_cast<uint64_t>(batch.positions[i]),
                                      DrawKind::kCaptionDropout);
    if (at::rand({1}, g, at::TensorOptions().dtype(at::kDouble)).item<double>() >= rate) continue;
    const int64_t row = static_cast<int64_t>(i);
    batch.input_ids_1[row].copy_(empty_ids_1);
    batch.input_ids_2[row].copy_(empty_ids_2);
    batch.caption_keys[i] = empty_caption_key;
    ++dropped;
  }
  return dropped;
}

}  // namespace xltune
