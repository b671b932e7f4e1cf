#include "prep/caption_decoding.h"

#include <ATen/ATen.h>
#include <torch/torch.h>

#include <cmath>

#include "core/check.h"
#include "core/keyed_random.h"

namespace xltune {
namespace {

constexpr double kExcluded = -1.0e9;  // transformers' "very large negative" score

// Greedy and sampled captions, all images at once (generation/utils.py _sample).
std::vector<std::vector<int64_t>> decode_one_by_one(Blip& model, const at::Tensor& embeds,
                                                    const CaptionDecodingOptions& o,
                                                    const std::vector<uint64_t>& keys) {
  const BlipTextConfig& t = model->config().text;
  const int64_t b = embeds.size(0);
  const auto long_cpu = at::TensorOptions().dtype(at::kLong);
  BlipDecoderCache cache = model->start_decoding(embeds);
  std::vector<std::vector<int64_t>> out(static_cast<size_t>(b), std::vector<int64_t>{t.bos_token_id});
  std::vector<bool> running(static_cast<size_t>(b), true);
  at::Tensor next = at::full({b, 1}, t.bos_token_id, long_cpu);
  for (int64_t length = 1; length < o.max_length; ++length) {
    at::Tensor scores = model->decode(next.to(embeds.device()), cache).select(1, -1).to(at::kFloat).cpu();
    at::Tensor tokens;
    if (o.decoding == CaptionDecoding::kGreedy) {
      tokens = scores.argmax(-1);
    } else {
      scores = scores / o.temperature;
      const int64_t k = std::min(o.top_k, scores.size(-1));
      const at::Tensor kth = std::get<0>(at::topk(scores, k)).select(-1, k - 1).unsqueeze(-1);
      scores = scores.masked_fill(scores < kth, -std::numeric_limits<float>::infinity());
      const at::Tensor probs = at::softmax(scores, -1);
      tokens = at::full({b}, t.pad_token_id, long_cpu);
      for (int64_t r = 0; r < b; ++r) {
        if (!running[static_cast<size_t>(r)]) continue;
        at::Generator g = keyed_generator(o.seed, static_cast<uint64_t>(length), keys[static_cast<size_t>(r)],
                                          DrawKind::kCaptionToken);
        tokens[r] = at::multinomial(probs[r], 1, false, g)[0];
      }
    }
    bool any = false;
    for (int64_t r = 0; r < b; ++r) {
      const size_t i = static_cast<size_t>(r);
      if (!running[i]) {
        tokens[r] = t.pad_token_id;
        continue;
      }
      const int64_t token = tokens[r].item<int64_t>();
      out[i].push_back(token);
      running[i] = token != t.sep_token_id;
      any = any || running[i];
    }
    if (!any) break;
    next = tokens.view({b, 1});
  }
  return out;
}

// One image's beam search (generation/utils.py _beam_search with batch 1, early_stopping=False),
// kept in [1, K] shapes so that each tensor operation is the one transformers runs.
std::vector<int64_t> beam_search(Blip& model, const at::Tensor& embeds, const CaptionDecodingOptions& o) {
  const BlipTextConfig& t = model->config().text;
  const int64_t nb = o.num_beams, keep = 2 * nb, max_length = o.max_length, prompt = 1;
  const auto f32 = at::TensorOptions().dtype(at::kFloat);
  const auto i64 = at::TensorOptions().dtype(at::kLong);
  BlipDecoderCache cache = model->start_decoding(embeds.expand({nb, -1, -1}).contiguous());
  at::Tensor running = at::full({nb, max_length}, t.sep_token_id, i64);
  running.select(1, 0).fill_(t.bos_token_id);
  at::Tensor sequences = running.clone();
  at::Tensor lengths = at::ones({nb}, i64);
  at::Tensor running_scores = at::zeros({1, nb}, f32);
  running_scores.slice(1, 1).fill_(kExcluded);
  at::Tensor beam_scores = at::full({1, nb}, kExcluded, f32);
  at::Tensor finished = at::zeros({1, nb}, at::kBool);
  bool improvable = true;
  const at::Tensor top_beams = at::cat({at::ones({nb}, at::kBool), at::zeros({keep - nb}, at::kBool)}).unsqueeze(0);
  at::Tensor last = running.slice(1, 0, 1);
  for (int64_t length = prompt;;) {
    at::Tensor logits = model->decode(last.to(embeds.device()), cache).select(1, -1).to(at::kFloat).cpu();
    at::Tensor log_probs = at::log_softmax(logits, -1);
    const int64_t vocab = log_probs.size(-1);
    log_probs = (log_probs.unsqueeze(0) + running_scores.unsqueeze(-1)).reshape({1, -1});
    auto [topk_scores, topk_index] = at::topk(log_probs, keep);
    const at::Tensor from = at::floor_divide(topk_index, vocab), token = topk_index.remainder(vocab);
    at::Tensor candidates = running.index_select(0, from[0]);
    candidates.select(1, length).copy_(token[0]);
    const at::Tensor hits = token.eq(t.sep_token_id).logical_or(at::full_like(token, length + 1 >= max_length, at::kBool));

    // The best unfinished continuations go on.
    const at::Tensor open_scores = topk_scores + hits.to(at::kFloat) * kExcluded;
    const at::Tensor next = std::get<1>(at::topk(open_scores, nb))[0];
    running = candidates.index_select(0, next);
    running_scores = open_scores.index_select(1, next);
    const at::Tensor rows = from[0].index_select(0, next);

    // Finished among the first `nb` candidates join the hypotheses, the best `nb` kept.
    const at::Tensor just_finished = hits.logical_and(top_beams);
    at::Tensor scores = topk_scores / std::pow(static_cast<double>(length + 1 - prompt), o.length_penalty);
    scores = scores + at::full({1, 1}, improvable ? 0.0f : 1.0f, f32) * kExcluded;
    scores = scores + just_finished.logical_not().to(at::kFloat) * kExcluded;
    const at::Tensor merged_scores = at::cat({beam_scores, scores}, 1);
    const at::Tensor best = std::get<1>(at::topk(merged_scores, nb))[0];
    sequences = at::cat({sequences, candidates}).index_select(0, best);
    lengths = at::cat({lengths, at::full({keep}, length + 1, i64)}).index_select(0, best);
    beam_scores = merged_scores.index_select(1, best);
    finished = at::cat({finished, just_finished}, 1).index_select(1, best);

    cache.select_rows(rows);
    ++length;
    // Can a running beam still beat the worst finished hypothesis?
    const at::Tensor best_possible =
        running_scores.slice(1, 0, 1) / std::pow(static_cast<double>(length - prompt), o.length_penalty);
    const at::Tensor worst =
        at::where(finished, std::get<0>(beam_scores.min(1, true)), at::full({1, 1}, kExcluded, f32));
    improvable = improvable && best_possible.gt(worst).any().item<bool>();
    if (!improvable || hits.all().item<bool>()) break;
    last = running.slice(1, length - 1, length);
  }
  const at::Tensor ids = sequences[0].slice(0, 0, lengths[0].item<int64_t>()).contiguous();
  return std::vector<int64_t>(ids.data_ptr<int64_t>(), ids.data_ptr<int64_t>() + ids.numel());
}

}  // namespace

CaptionDecoding parse_caption_decoding(const std::string& text, const std::string& option) {
  if (text == "sample") return CaptionDecoding::kSample;
  if (text == "greedy") return CaptionDecoding::kGreedy;
  if (text == "beam") return CaptionDecoding::kBeam;
  XLTUNE_FAIL(option, " '", text, "': expected sample, greedy or beam");
}

std::vector<std::vector<int64_t>> decode_captions(Blip& model, const at::Tensor& image_embeds,
                                                  const CaptionDecodingOptions& o,
                                                  const std::vector<uint64_t>& image_keys) {
  XLTUNE_CHECK(image_embeds.dim() == 3 && static_cast<int64_t>(image_keys.size()) == image_embeds.size(0),
               "caption decoding: expected one key per image, got ", image_keys.size(), " for ", image_embeds.sizes());
  XLTUNE_CHECK(o.max_length >= 2, "caption decoding: max_length ", o.max_length, " leaves no room for a token");
  XLTUNE_CHECK(o.max_length <= model->config().text.max_position_embeddings, "caption decoding: max_length ",
               o.max_length, " exceeds the decoder's ", model->config().text.max_position_embeddings, " positions");
  XLTUNE_CHECK(o.decoding != CaptionDecoding::kSample || (o.top_k >= 1 && o.temperature > 0),
               "caption decoding: sampling needs top_k >= 1 and a positive temperature");
  at::NoGradGuard no_grad;
  if (o.decoding != CaptionDecoding::kBeam) return decode_one_by_one(model, image_embeds, o, image_keys);
  XLTUNE_CHECK(o.num_beams >= 1 && 2 * o.num_beams <= model->config().text.vocab_size,
               "caption decoding: num_beams ", o.num_beams, " must be at least 1 and at most half the vocabulary");
  std::vector<std::vector<int64_t>> out;
  for (int64_t i = 0; i < image_embeds.size(0); ++i) out.push_back(beam_search(model, image_embeds.slice(0, i, i + 1), o));
  return out;
}

}  // namespace xltune
