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
  const int H = s.height > 0 ? s.height : resolution, W = s.width > 0 ? s.width : resolution;
  // The scale that makes the image cover H x W: for a square, resolution / its short side.
  const double scale =
      s.original_height > 0 && s.original_width > 0
          ? std::max(static_cast<double>(H) / s.original_height, static_cast<double>(W) / s.original_width)
          : 1.0;
  return {static_cast<float>(s.original_height), static_cast<float>(s.original_width),
          static_cast<float>(std::lround(s.crop_top * scale)), static_cast<float>(std::lround(s.crop_left * scale)),
          static_cast<float>(H), static_cast<float>(W)};
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
  for (size_t first = 0; first < indices.size();) {
    // A batch of up to batch_size consecutive samples of one size (aspect buckets: sizes vary).
    std::vector<at::Tensor> images;
    while (first + images.size() < indices.size() && static_cast<int64_t>(images.size()) < batch_size) {
      ShardSample s = shards.read(indices[first + images.size()]);
      const int64_t h = s.height > 0 ? s.height : R, w = s.width > 0 ? s.width : R;
      if (!images.empty() && (images.front().size(1) != h || images.front().size(2) != w)) break;
      at::Tensor pixels = at::from_blob(s.image.data(), {h, w, 3}, at::kByte).clone();
      // uint8 HWC -> [-1, 1] CHW, as diffusers' ToTensor + Normalize([0.5], [0.5]).
      images.push_back((pixels.permute({2, 0, 1}).to(at::kFloat) / 255.0 - 0.5) / 0.5);
    }
    const size_t n = images.size();
    LatentDistribution d = vae->encode(at::stack(images).to(device, dtype));
    at::Tensor mean = d.mean.to(at::kCPU, at::kFloat).contiguous(), logvar = d.logvar.to(at::kCPU, at::kFloat).contiguous();
    cache.channels = mean.size(1);
    for (size_t i = 0; i < n; ++i) cache.heights.push_back(mean.size(2)), cache.widths.push_back(mean.size(3));
    cache.mean.insert(cache.mean.end(), mean.data_ptr<float>(), mean.data_ptr<float>() + mean.numel());
    cache.logvar.insert(cache.logvar.end(), logvar.data_ptr<float>(), logvar.data_ptr<float>() + logvar.numel());
    const auto now = std::chrono::steady_clock::now();
    if (first + n == indices.size() || now - last_log > std::chrono::seconds(5)) {
      last_log = now;
      log_info("encoded ", first + n, " of ", indices.size(), " images into latents (",
               std::chrono::duration<double>(now - start).count(), " s)");
    }
    first += n;
  }
  return cache;
}

namespace {
// Latents, masks and size conditioning of sample i as tensors of its own size.
struct SampleTensors {
  at::Tensor mean, logvar, mask;  // [C, h, w], [C, h, w], [1, h, w]
};

SampleTensors sample_tensors(const LatentCache& latents, size_t i, size_t offset, ShardSample& s, int R) {
  const int64_t c = latents.channels, h = latents.heights[i], w = latents.widths[i];
  const int64_t H = s.height > 0 ? s.height : R, W = s.width > 0 ? s.width : R;
  XLTUNE_CHECK(h > 0 && w > 0 && H % h == 0 && W % w == 0 && H / h == W / w, "training set: a latent of ", h, "x",
               w, " for an image of ", W, "x", H, " px (sample ", latents.key.samples[i], ")");
  const auto f32 = at::TensorOptions().dtype(at::kFloat);
  SampleTensors t;
  t.mean = at::from_blob(const_cast<float*>(latents.mean.data() + offset), {c, h, w}, f32);
  t.logvar = at::from_blob(const_cast<float*>(latents.logvar.data() + offset), {c, h, w}, f32);
  // The reference: mask / 255 at the image size, then nearest-neighbour down to the latents.
  at::Tensor m = at::from_blob(s.mask.data(), {1, 1, H, W}, at::kByte).to(at::kFloat) / 255.0;
  t.mask = at::upsample_nearest2d(m, {h, w}).squeeze(0);
  return t;
}

// Mixed sizes (Note [Aspect buckets]): one group per latent size, in size order.
void group_by_size(TrainingSet& set, std::vector<SampleTensors>& samples, at::Device device) {
  std::map<std::pair<int64_t, int64_t>, std::vector<int64_t>> members;
  for (size_t i = 0; i < samples.size(); ++i)
    members[{samples[i].mean.size(1), samples[i].mean.size(2)}].push_back(static_cast<int64_t>(i));
  set.group_of.assign(samples.size(), -1);
  set.row_in_group.assign(samples.size(), -1);
  for (const auto& [size, rows] : members) {
    std::vector<at::Tensor> mean, logvar, mask;
    for (size_t r = 0; r < rows.size(); ++r) {
      const auto i = static_cast<size_t>(rows[r]);
      mean.push_back(samples[i].mean), logvar.push_back(samples[i].logvar), mask.push_back(samples[i].mask);
      set.group_of[i] = static_cast<int64_t>(set.size_groups.size());
      set.row_in_group[i] = static_cast<int64_t>(r);
    }
    set.size_groups.push_back({at::stack(mean).to(device), at::stack(logvar).to(device), at::stack(mask).to(device)});
    log_info("training set: ", rows.size(), " samples with latents ", size.first, "x", size.second);
  }
}
}  // namespace

TrainingSet build_training_set(const ShardSet& shards, const LatentCache& latents, const ClipTokenizer& tokenizer_1,
                               const ClipTokenizer& tokenizer_2, at::Device device) {
  const auto& indices = latents.key.samples;
  const int64_t n = static_cast<int64_t>(indices.size());
  const int R = shards.info().resolution;
  XLTUNE_CHECK(n > 0, "training set: no samples");
  XLTUNE_CHECK(latents.heights.size() == indices.size() && latents.widths.size() == indices.size(),
               "training set: ", n, " samples but ", latents.heights.size(), " latent sizes");
  TrainingSet set;
  const std::vector<size_t> offsets = latents.offsets();
  std::vector<SampleTensors> samples;
  std::vector<int64_t> ids_1, ids_2;
  std::vector<float> time_ids;
  std::map<std::pair<std::vector<int64_t>, std::vector<int64_t>>, int64_t> keys;
  for (int64_t i = 0; i < n; ++i) {
    ShardSample s = shards.read(indices[i]);
    samples.push_back(sample_tensors(latents, static_cast<size_t>(i), offsets[static_cast<size_t>(i)], s, R));
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
  if (latents.one_size()) {
    std::vector<at::Tensor> mean, logvar, mask;
    for (const auto& t : samples) mean.push_back(t.mean), logvar.push_back(t.logvar), mask.push_back(t.mask);
    set.mean = at::stack(mean).to(device);
    set.logvar = at::stack(logvar).to(device);
    set.mask = at::stack(mask).to(device);
  } else {
    group_by_size(set, samples, device);
  }
  set.input_ids_1 = at::tensor(ids_1, at::kLong).view({n, L}).to(device);
  set.input_ids_2 = at::tensor(ids_2, at::kLong).view({n, L}).to(device);
  set.add_time_ids = at::tensor(time_ids, at::kFloat).view({n, 6}).to(device);
  log_info("training set: ", n, " samples, ", keys.size(), " distinct captions, latents ", latents.channels, "x",
           latents.heights[0], "x", latents.widths[0], set.size_groups.empty() ? "" : " and other sizes");
  return set;
}

std::vector<uint64_t> TrainingSet::size_keys() const {
  const auto key = [](const at::Tensor& latents) {
    return (static_cast<uint64_t>(latents.size(-2)) << 32) | static_cast<uint64_t>(latents.size(-1));
  };
  if (size_groups.empty()) return std::vector<uint64_t>(static_cast<size_t>(size()), key(mean));
  std::vector<uint64_t> out;
  for (int64_t g : group_of) out.push_back(key(size_groups.at(static_cast<size_t>(g)).mean));
  return out;
}

StepBatch TrainingSet::batch(const std::vector<uint64_t>& indices, const std::vector<int64_t>& positions) const {
  std::vector<int64_t> rows(indices.begin(), indices.end());
  at::Tensor index = at::tensor(rows, at::kLong).to(input_ids_1.device());
  StepBatch b;
  if (size_groups.empty()) {
    b.latent_mean = mean.index_select(0, index);
    b.latent_logvar = logvar.index_select(0, index);
    b.mask = mask.index_select(0, index);
  } else {
    XLTUNE_CHECK(!indices.empty(), "training set: an empty batch");
    const int64_t group = group_of.at(indices.front());
    std::vector<int64_t> group_rows;
    for (uint64_t i : indices) {
      XLTUNE_CHECK(group_of.at(i) == group, "training set: samples ", indices.front(), " and ", i,
                   " of one batch have latents of different sizes (Note [Aspect buckets])");
      group_rows.push_back(row_in_group.at(i));
    }
    const SizeGroup& g = size_groups.at(static_cast<size_t>(group));
    at::Tensor in_group = at::tensor(group_rows, at::kLong).to(g.mean.device());
    b.latent_mean = g.mean.index_select(0, in_group);
    b.latent_logvar = g.logvar.index_select(0, in_group);
    b.mask = g.mask.index_select(0, in_group);
  }
  b.input_ids_1 = input_ids_1.index_select(0, index);
  b.input_ids_2 = input_ids_2.index_select(0, index);
  b.add_time_ids = add_time_ids.index_select(0, index);
  b.positions = positions;
  for (auto i : indices) b.caption_keys.push_back(caption_keys.at(i));
  return b;
}

TrainingSet TrainingSet::subset(const std::vector<int64_t>& rows) const {
  const at::Tensor index = at::tensor(rows, at::kLong).to(input_ids_1.device());
  TrainingSet out;
  if (mean.defined()) {
    out.mean = mean.index_select(0, index);
    out.logvar = logvar.index_select(0, index);
    out.mask = mask.index_select(0, index);
  } else {  // Note [Aspect buckets]: the same groups, each with the rows it keeps
    std::vector<std::vector<int64_t>> kept(size_groups.size());
    for (int64_t r : rows) {
      const auto g = static_cast<size_t>(group_of.at(static_cast<size_t>(r)));
      out.group_of.push_back(static_cast<int64_t>(g));
      out.row_in_group.push_back(static_cast<int64_t>(kept[g].size()));
      kept[g].push_back(row_in_group.at(static_cast<size_t>(r)));
    }
    for (size_t g = 0; g < size_groups.size(); ++g) {
      const SizeGroup& group = size_groups[g];
      const at::Tensor in_group = at::tensor(kept[g], at::kLong).to(group.mean.device());
      out.size_groups.push_back(SizeGroup{group.mean.index_select(0, in_group), group.logvar.index_select(0, in_group),
                                          group.mask.index_select(0, in_group)});
    }
  }
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
