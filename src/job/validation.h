// Validation images while training: every --validation_steps steps and at the end, each
// --validation_prompt rendered --num_validation_images times with the weights of that step, into
// OUTPUT_DIR/samples/step-NNNNNN.png (a grid: a row per prompt, a column per image).
//
// The seeds are the same at every step (the run's seed for every prompt), so that a column shows
// one starting noise as training goes on. Rendering uses its own CPU generator and no gradient,
// and training's draws are keyed by step (Note [Keyed draws]): a run with validation trains the
// weights of a run without, bit for bit. On many ranks the images are shared out and rank 0
// writes the grid (generate/render_on_ranks.h).
#pragma once

#include <memory>
#include <string>

#include "dist/communicator.h"
#include "generate/sdxl_pipeline.h"
#include "job/tensorboard_log.h"
#include "job/train_options.h"

namespace xltune {

class Validation {
 public:
  // `model` must keep its VAE. The tokenizers are the run's (with <s0><s1> added).
  Validation(const TrainOptions& o, SdxlModel& model, const ClipTokenizer& tokenizer_1, const ClipTokenizer& tokenizer_2,
             uint64_t seed, at::Device device);

  bool due(int64_t step, int64_t total) const;
  // Every rank calls it; rank 0 writes the grid and returns its path.
  std::string render(int64_t step, Communicator& comm);
  // Rank 0 (--report_to tensorboard): each grid also goes to `tensorboard` as the image
  // "validation" at its step.
  void report_to(TensorBoardLog* tensorboard) { tensorboard_ = tensorboard; }

 private:
  const TrainOptions& o_;
  SdxlPipeline pipe_;
  uint64_t seed_;
  at::Device device_;
  std::vector<std::string> prompts_;  // with the trigger replaced
  TensorBoardLog* tensorboard_ = nullptr;
};

}  // namespace xltune
