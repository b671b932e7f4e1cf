// Captions as the reference trainer writes them with BLIP, end to end: a BLIP folder (model,
// BERT tokenizer files, preprocessor_config.json) in; for each image, the processor's pixels
// (bicubic resize to the model's size, OpenAI CLIP's mean and std), the vision tower, the
// decoding of caption_decoding.h and the WordPiece text out.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "prep/blip.h"
#include "prep/caption_decoding.h"
#include "prep/image_processor.h"
#include "prep/wordpiece_decoder.h"

namespace xltune {

// One image as rows of width * 3 bytes (RGB).
struct RgbView {
  const uint8_t* rgb = nullptr;
  int width = 0, height = 0;
};

class BlipCaptioner {
 public:
  // Errors name the folder and the missing or wrong file. options: the model's dtype and device
  // (bf16 on a GPU; the decoding itself is fp32).
  BlipCaptioner(const std::string& dir, const at::TensorOptions& options);

  // Captions of a batch of images; keys[i] keys image i's sampled tokens (caption_decoding.h).
  std::vector<std::string> captions(const std::vector<RgbView>& images, const CaptionDecodingOptions& decoding,
                                    const std::vector<uint64_t>& keys);
  // The token ids instead of the text, for checking against transformers.
  std::vector<std::vector<int64_t>> token_ids(const std::vector<RgbView>& images,
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
};

}  // namespace xltune
