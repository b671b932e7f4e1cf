// Captions as the reference trainer writes them with BLIP, end to end: a BLIP folder (model,
// BERT tokenizer files, preprocessor_config.json) in; for each image, the processor's pixels
// (bicubic resize to the model's size, OpenAI CLIP's mean and std), the vision tower, the
// decoding of caption_decoding.h and the WordPiece text out. It is preprocessing's Captioner
// (core/image_models.h).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/image.h"
#include "core/image_models.h"
#include "prep/blip.h"
#include "prep/caption_decoding.h"
#include "prep/image_processor.h"
#include "prep/wordpiece_decoder.h"

namespace xltune {

class BlipCaptioner : public Captioner {
 public:
  // Errors name the folder and the missing or wrong file. options: the model's dtype and device
  // (bf16 on a GPU; the decoding itself is fp32). decoding: how the Captioner interface decodes
  // (by default the reference's: sampling, top-k 50, temperature 0.7, 150 tokens; seeded).
  BlipCaptioner(const std::string& dir, const at::TensorOptions& options, const CaptionDecodingOptions& decoding = {});

  // Preprocessing's captions (RGB images), decoded as constructed; image i's draws are keyed by
  // the hash of sample_names[i], so a caption does not depend on the images before it. Lower
  // case, as BLIP writes (data/captions.h restores the trigger word).
  std::vector<std::string> captions(const std::vector<ImageView>& rgb,
                                    const std::vector<std::string>& sample_names) override;
  // What preprocess() hands over at once: 8 images on a GPU, 1 on a CPU.
  size_t batch_size() const override { return batch_size_; }

  // Captions of a batch of RGB images; keys[i] keys image i's sampled tokens (caption_decoding.h).
  std::vector<std::string> captions(const std::vector<ImageView>& rgb, const CaptionDecodingOptions& decoding,
                                    const std::vector<uint64_t>& keys);
  // The token ids instead of the text, for checking against transformers.
  std::vector<std::vector<int64_t>> token_ids(const std::vector<ImageView>& rgb,
                                              const CaptionDecodingOptions& decoding,
                                              const std::vector<uint64_t>& keys);

  const std::string& dir() const { return dir_; }
  const ImageProcessorConfig& processor() const { return processor_; }
  const WordPieceDecoder& text() const { return text_; }
  Blip& model() { return model_; }

 private:
  std::string dir_;
  Blip model_{nullptr};
  ImageProcessorConfig processor_;
  WordPieceDecoder text_;
  at::TensorOptions options_;
  CaptionDecodingOptions decoding_;
  size_t batch_size_;
};

}  // namespace xltune
