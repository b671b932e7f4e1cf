// Which steps must not reach the weights: a non-finite gradient, or one that spikes.
//
// Note [Skipped steps]
// A step is skipped, on every rank together, when its global gradient norm (before clipping) is
// not finite, or, with a spike factor F > 0, when it exceeds F times the median norm of the last
// 100 accepted steps (once at least 10 were accepted: the first steps' norms say little). The
// norm is the one clipping computes anyway from the averaged gradients, so every rank sees the
// same value and decides the same without another collective or host read: a NaN or inf in one
// rank's loss or gradients reaches every rank through the average (NaN + x is NaN).
// A skipped step leaves the weights, the optimizer state (AdamW counts steps per tensor), EMA
// and the learning-rate schedule untouched: the schedule advances with accepted steps
// (factor_for_step(accepted + 1)), as accelerate's scheduler does when an optimizer step is
// skipped. The step still consumes its samples and counts toward --max_train_steps, and the
// pivot of pivotal tuning stays at its step. The guard's state (accepted steps, skips in a row,
// the recent norms) is in the checkpoint, so a resumed run decides as an uninterrupted one.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <deque>
#include <map>
#include <string>

#include "core/safetensors.h"

namespace xltune {

class BadStepGuard {
 public:
  static constexpr int64_t kHistory = 100;    // accepted norms the median is taken over
  static constexpr int64_t kMinHistory = 10;  // accepted steps before spikes are judged

  explicit BadStepGuard(double spike_factor = 0);

  // Why a step whose global gradient norm is `grad_norm` must be skipped; empty: take it.
  std::string verdict(double grad_norm) const;
  // The same verdict computed on the device from the norm there (a 0-dim tensor): float32 0-dim,
  // 1 to take the step, 0 to skip it, with no host read (Note [The step's verdict on the
  // device], train/trainer.h). Equal to verdict(norm).empty() for the norm's value: the norm
  // is compared in fp64 with the threshold the host computes from the accepted norms.
  at::Tensor verdict_on_device(const at::Tensor& grad_norm) const;
  // The same with the threshold read from `threshold`, a float64 0-dim tensor on the norm's
  // device that holds spike_threshold() (a captured step's input: Note [The step as a CUDA
  // graph], train/trainer.h). The same verdict: norm <= +inf holds for every finite norm.
  at::Tensor verdict_on_device(const at::Tensor& grad_norm, const at::Tensor& threshold) const;
  // The largest norm a step with a finite norm may have to be taken (+inf: no spike test yet).
  double spike_threshold() const;
  // The threshold for the step after one still in flight (Note [Reading a step one step late],
  // train/trainer.h), whose norm (float32 0-dim) and verdict (float32 0-dim, 1 or 0) are on the
  // device: spike_threshold() where the verdict is 0, else the threshold once that norm is
  // accepted, computed there with no host read: a float64 0-dim tensor on the norm's device, the
  // host's number after accept(norm) bit for bit.
  at::Tensor threshold_after(const at::Tensor& before_norm, const at::Tensor& before_taken) const;
  // Records the step's outcome.
  void accept(double grad_norm);
  void skip();

  int64_t accepted_steps() const { return accepted_; }
  int64_t skipped_in_a_row() const { return skipped_in_a_row_; }
  int64_t skipped_total() const { return skipped_total_; }
  // The median of the recent accepted norms (0 when none).
  double median_norm() const;

  // For the checkpoint: "bad_step_guard.accepted", ".skipped_in_a_row", ".skipped_total" (int64
  // scalars) and ".recent_grad_norms" (float64, oldest first).
  NamedTensors state_tensors() const;
  // Back from them; a checkpoint from before the guard existed had every step accepted.
  void load_state(const std::map<std::string, at::Tensor>& tensors, int64_t completed_steps);

 private:
  double spike_factor_;
  int64_t accepted_ = 0, skipped_in_a_row_ = 0, skipped_total_ = 0;
  std::deque<double> recent_;
};

}  // namespace xltune
