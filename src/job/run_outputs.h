// What a training run hands over, at the end and in each checkpoint: the trained weights as
// the exporters take them, and the trainer state with every export file.
#pragma once

#include <fstream>
#include <string>
#include <vector>

#include "job/tensorboard_log.h"
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

class MetricsLog;

// The end of a run (rank 0): trainer_state.safetensors and the export files, loss.png (the
// metrics' losses and validation losses), then trained_model.tar last (the run is complete when
// it exists). Returns the tar's members.
std::vector<std::string> write_final_outputs(const Trainer& trainer, const TrainOptions& o, const SdxlModel& model,
                                             const MetricsLog& metrics, int64_t samples, int64_t total_steps);

// Files of a finished run in OUTPUT_DIR; an earlier run's are removed before a new one starts, so
// that a run that fails leaves nothing that looks complete.
extern const char* const kRunOutputs[11];

// Removes an earlier run's outputs from `output_dir` and the unfinished checkpoint writes (folders
// without a manifest) under its checkpoints/; returns the first `keep_metrics_steps` lines of its
// metrics.jsonl (the steps a resumed run resumes after), read before it goes. With none kept (a
// run that starts over) the TensorBoard logs/ go too; a resumed run adds a file to them.
std::vector<std::string> clear_run_outputs(const std::string& output_dir, int64_t keep_metrics_steps);

// OUTPUT_DIR/metrics.jsonl (rank 0): one JSON line a step, flushed as it goes, starting with the
// lines a resumed run kept; the losses for loss.png, and the validation losses of the lines that
// have one ("validation_loss", Note [Validation loss]) at their steps. With `tensorboard`
// (--report_to tensorboard), every number of each appended line goes there too, under its key.
class MetricsLog {
 public:
  MetricsLog(const std::string& path, const std::vector<std::string>& kept_lines,
             TensorBoardLog* tensorboard = nullptr);
  void append(const std::string& json_line, double loss);
  void close() { out_.close(); }
  const std::vector<double>& losses() const { return losses_; }
  const std::vector<std::pair<int64_t, double>>& validation_losses() const { return validation_losses_; }

 private:
  void note_validation_loss(const nlohmann::json& line);

  std::ofstream out_;
  std::vector<double> losses_;
  std::vector<std::pair<int64_t, double>> validation_losses_;  // (step, value)
  TensorBoardLog* tensorboard_;
};

}  // namespace xltune
