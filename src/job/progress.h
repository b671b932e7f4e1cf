// What a user watches during training (rank 0 only):
//   on a terminal: one live line, rewritten every step:
//     step 120/1000  loss 0.1043 (avg 0.1187)  val 0.0981  lr 1.00e-04  3.21 it/s  ETA 4:34
//   ("val": the last validation loss, once one was measured, Note [Validation loss])
//   elsewhere (a Slurm log, a pipe): the same text as a log line every --log_every steps, at
//   the first and last step, and at each step that measured a validation loss.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

namespace xltune {

class TrainProgress {
 public:
  TrainProgress(int64_t total_steps, int64_t log_every, bool enabled);
  ~TrainProgress();
  // `validation_loss`: the step's, when it measured one.
  void update(int64_t step, double loss, double lr, std::optional<double> validation_loss = std::nullopt);
  // Ends the live line (so later output starts on a line of its own).
  void finish();
  double seconds() const;
  static std::string duration_text(double seconds);  // "4:34", "1:02:03"

 private:
  int64_t total_, every_;
  bool enabled_, terminal_, line_open_ = false;
  double avg_ = 0;
  std::optional<double> validation_loss_;  // the last one measured
  int64_t count_ = 0;
  std::chrono::steady_clock::time_point start_, first_step_done_;
};

}  // namespace xltune
