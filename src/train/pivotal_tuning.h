// Pivotal tuning (the reference trainer's "PTI"): new token rows <s0><s1> in both text
// encoders, trained beside the UNet's LoRA (or the UNet itself) until the pivot, then frozen.
//
// Note [Pivotal tuning]
//   - rows: randn(n, dim) * std(old table) per encoder (text/clip_text_model.h), fp32;
//   - trained with ti_lr in steps 1..P, P = floor(max_train_steps / 2) (the reference pivots
//     at half the epochs), frozen from step P+1;
//   - after each optimizer step of steps 1..P, each encoder's rows together are scaled once by
//     (std_old / std(rows))^0.1, both std as torch.std computes them (unbiased), std_old over
//     the whole old table, measured once. The reference restores the old rows and applies this
//     scaling twice per step (a loop bug); xltune's old rows cannot change (Note [New token
//     rows]) and the scaling is applied once;
//   - the optimizer state of the other groups survives the pivot (the reference builds a new
//     AdamW there and loses LoRA's moments);
//   - after the pivot the encoders' outputs are fixed per caption: they are computed once per
//     caption, kept, and the encoders no longer run (TextConditioningCache).
#pragma once

#include <ATen/core/Tensor.h>

#include <map>
#include <utility>

namespace xltune {

class PivotalTuning {
 public:
  // rows: the new-row parameters of the two encoders; std_old: the std of their old tables.
  PivotalTuning(at::Tensor rows_1, at::Tensor rows_2, double std_old_1, double std_old_2, int64_t pivot_step);

  int64_t pivot_step() const { return pivot_step_; }
  // Whether step (1-based) trains the rows.
  bool trains_rows(int64_t step) const { return step <= pivot_step_; }
  // The norm-keeping scaling, after the optimizer step of a step that trained the rows; where
  // `apply` (Optimizer::step's verdict, a float32 0-dim device tensor) is 0 the rows stay as
  // they are (a factor of exactly 1), with no host read. Undefined: applied.
  void after_optimizer_step(const at::Tensor& apply = {});
  const at::Tensor& rows(int i) const { return i == 0 ? rows_1_ : rows_2_; }
  double std_old(int i) const { return i == 0 ? std_old_1_ : std_old_2_; }

 private:
  at::Tensor rows_1_, rows_2_;
  double std_old_1_, std_old_2_;
  int64_t pivot_step_;
};

// Text conditioning by caption, once the encoders are frozen: (context [77, D], pooled [P]).
class TextConditioningCache {
 public:
  bool contains(int64_t key) const { return entries_.count(key) != 0; }
  const std::pair<at::Tensor, at::Tensor>& get(int64_t key) const { return entries_.at(key); }
  void put(int64_t key, at::Tensor context, at::Tensor pooled);
  size_t size() const { return entries_.size(); }

 private:
  std::map<int64_t, std::pair<at::Tensor, at::Tensor>> entries_;
};

}  // namespace xltune
