// The reference trainer's prompt masks with CLIPSeg, end to end (Note [CLIPSeg masks] in
// prep/clipseg.h): a CLIPSeg folder (model, tokenizer files, preprocessor_config.json) in, an
// 8-bit mask of the photo's size out.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "prep/clipseg.h"
#include "prep/image_processor.h"
#include "text/clip_tokenizer.h"

namespace xltune {

class ClipSegMasker {
 public:
  // Errors name the folder and the missing or wrong file.
  ClipSegMasker(const std::string& dir, const at::TensorOptions& options);

  // rgb: height rows of width * 3 bytes. Returns width * height bytes (255: what the prompt names).
  std::vector<uint8_t> mask(const uint8_t* rgb, int width, int height, const std::string& prompt, double temperature);
  // The logits of [prompt, ""] for the image ([2, h, w]), for checking against transformers.
  at::Tensor logits(const uint8_t* rgb, int width, int height, const std::string& prompt);

  const std::string& dir() const { return dir_; }
  ClipTokenizer& tokenizer() { return tokenizer_; }
  const ImageProcessorConfig& processor() const { return processor_; }
  ClipSeg& model() { return model_; }

 private:
  std::string dir_;
  ClipSeg model_{nullptr};
  ClipTokenizer tokenizer_;
  ImageProcessorConfig processor_;
  at::TensorOptions options_;
};

}  // namespace xltune
