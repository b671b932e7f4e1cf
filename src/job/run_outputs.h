// What a training run hands over, at the end and in each checkpoint: the trained weights as
// the exporters take them, and the trainer state with every export file.
#pragma once

#include <string>
#include <vector>

#include "job/train_options.h"
#include "train/export.h"
#include "train/trainer.h"

namespace xltune {

// The trained weights of `trainer` at `step` of `total`, with the training facts for the kohya
// file's metadata.
TrainedWeights weights_of(const Trainer& trainer, const TrainOptions& o, const SdxlModel& model, int64_t step,
                          int64_t total);
// The trainer state and every export file into `dir`; returns the files for the tar.
std::vector<std::string> write_run_files(const Trainer& trainer, const TrainedWeights& w, const std::string& dir,
                                         at::ScalarType unet_dtype);

}  // namespace xltune
