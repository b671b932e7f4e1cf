// Turning BLIP's next-token logits into captions, as transformers' generate() does for
// BlipForConditionalGeneration (Note [Caption decoding]).
//
// Note [Caption decoding]
// ~~~~~~~~~~~~~~~~~~~~~~~
// Every caption starts with the bos token ([DEC]) and ends at [SEP] (generate's eos for BLIP)
// or at max_length tokens, counting the bos.
//   greedy   the most likely token each step.
//   beam     transformers' vectorised beam search (generation/utils.py _beam_search), step for
//            step: log-softmax plus the beam's score, the best 2 x beams continuations over all
//            beams, those ending in [SEP] (or reaching max_length) among the first `beams`
//            become finished hypotheses scored by sum / generated_length^length_penalty, the
//            best `beams` unfinished ones continue; it stops when no running beam can beat the
//            worst finished one (early_stopping=False's heuristic) or at max_length. The same
//            float32 tensor operations in the same order, so the same ties break the same way.
//   sample   logits / temperature, all but the top_k set to -inf, softmax, one draw. The
//            reference draws from torch's global generator, unseeded; xltune draws from a
//            generator keyed by (seed, token position, the image's key) (core/keyed_random.h),
//            so a caption depends on the seed and the image, not on the batch it ran in or on
//            the device.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "prep/blip.h"

namespace xltune {

enum class CaptionDecoding { kSample, kGreedy, kBeam };

struct CaptionDecodingOptions {
  CaptionDecoding decoding = CaptionDecoding::kSample;  // the reference's do_sample=True
  int64_t num_beams = 3;
  int64_t top_k = 50;
  double temperature = 0.7;
  int64_t max_length = 150;  // tokens, the bos included
  double length_penalty = 1.0;
  uint64_t seed = 0;
};

// "sample", "greedy", "beam"; anything else is an error naming `option`.
CaptionDecoding parse_caption_decoding(const std::string& text, const std::string& option);

// The token ids of each image's caption: bos first, [SEP] last if it ended before max_length.
// image_embeds [B, N, D] from BlipImpl::image_embeds; image_keys[b] keys image b's draws.
std::vector<std::vector<int64_t>> decode_captions(Blip& model, const at::Tensor& image_embeds,
                                                  const CaptionDecodingOptions& options,
                                                  const std::vector<uint64_t>& image_keys);

}  // namespace xltune
