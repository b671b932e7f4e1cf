// The reference trainer's prompt masks with CLIPSeg, end to end (Note [CLIPSeg masks] in
// prep/clipseg.h): a CLIPSeg folder (model, tokenizer files, preprocessor_config.json) and a
// prompt in; for each photo, an 8-bit mask of its size out. It is preprocessing's MaskProvider
// for --mask_target_prompts (core/image_models.h).
#pragma once

#include <string>

#include "core/image.h"
#include "core/image_models.h"
#include "prep/clipseg.h"
#include "prep/image_processor.h"
#include "text/clip_tokenizer.h"

namespace xltune {

class ClipSegMasker : public MaskProvider {
 public:
  // Errors name the folder and the missing or wrong file. prompt: what the masks find
  // (--mask_target_prompts); temperature: the softmax's (--clipseg_temperature).
  ClipSegMasker(const std::string& dir, const at::TensorOptions& options, std::string prompt,
                double temperature = 1.0);

  std::string name() const override { return "CLIPSeg '" + prompt_ + "'"; }
  // The prompt's mask of an RGB image: 1 channel of its size (255: what the prompt names).
  Image mask(ImageView rgb, const std::string& sample_name) override;
  // The logits of [prompt, ""] for an RGB image ([2, h, w]), for checking against transformers.
  at::Tensor logits(ImageView rgb, const std::string& prompt);

  const std::string& prompt() const { return prompt_; }
  double temperature() const { return temperature_; }

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
  std::string prompt_;
  double temperature_;
};

}  // namespace xltune
