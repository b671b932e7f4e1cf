// An exponential moving average of the trained UNet tensors (--use_ema), as diffusers' EMAModel
// (src/diffusers/training_utils.py) computes it with use_ema_warmup off, min_decay 0 and
// update_after_step 0, after every optimization step s (1-based):
//
//   t     = s - 1
//   decay = 0                                  when t == 0 (the first step copies the weights)
//         = min(ema_decay, (1 + t) / (10 + t)) after it
//   ema  -= (1 - decay) * (ema - param)         as EMAModel(foreach=True), with 1 - decay a device
//                                               tensor (one more _foreach_ op than EMAModel's
//                                               alpha: a product and a difference, not one fused
//                                               multiply-add, so the last bits may differ)
//
// Note [EMA of the trained weights]
// - What: the tensors the UNet trains: each LoRA adapter's A and B separately (what diffusers'
//   EMAModel over peft's LoRA parameters averages), or every trained UNet parameter in full
//   fine-tuning. Not the new token rows: diffusers' textual-inversion scripts keep no EMA, and the
//   rows stop training at the pivot anyway. The shadows are fp32, on the training device,
//   initialised from the weights before step 1.
// - Ranks: the shadows are replicated. Every rank holds the same parameters after each step
//   (all-reduced gradients, or ZeRO-1's all-gather), so every rank's EMA is the same and a step
//   means the same on any number of ranks. Full fine-tuning pays for that with one more fp32 UNet
//   per rank (4 B per trained parameter, 10.3 GB for SDXL's); sharding the shadows like ZeRO-1's
//   moments is possible and not done yet.
// - Checkpoints: the shadows are saved by rank 0 as "ema.<state name>" in trainer.safetensors
//   beside the live weights; the decay follows from the step, so nothing else is saved, and a
//   checkpoint resumes exactly on as many ranks and on any other number.
// - Output: with --use_ema the exported UNet tensors (trained_model.tar, trainer_state.safetensors,
//   each checkpoint's tar files) are the EMA's, as diffusers' scripts save the EMA model, and the
//   validation images are rendered with them. Both swap the shadows into the live tensors for a
//   scope (Swap) and back, bit for bit; training never sees them.
#pragma once

#include <ATen/core/Tensor.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/safetensors.h"

namespace xltune {

class ParameterEma {
 public:
  // `params`: the live trained tensors (fp32) under their state names; their values now are the
  // average's start.
  ParameterEma(std::vector<std::pair<std::string, at::Tensor>> params, double max_decay);
  ParameterEma(const ParameterEma&) = delete;
  ParameterEma& operator=(const ParameterEma&) = delete;

  // diffusers' get_decay at optimization step `step` (1-based): 0 at step 1, then
  // min(max_decay, (1 + t) / (10 + t)) with t = step - 1.
  static double decay_at(double max_decay, int64_t step);

  // The update after optimization step `step`.
  void update(int64_t step);
  // The update with `weight` (a float32 0-dim tensor on the shadows' device) for 1 - decay:
  // shadows -= weight * (shadows - params). A weight of 0 leaves them as they are, bit for bit,
  // so a step's update is queued before the host knows whether the step was taken (weight times
  // its verdict: Note [Reading a step one step late], train/trainer.h).
  void update(const at::Tensor& weight);

  double max_decay() const { return max_decay_; }
  const std::vector<std::string>& names() const { return names_; }
  const std::vector<at::Tensor>& shadows() const { return shadows_; }
  int64_t state_bytes() const;

  // "ema.<name>" for each tensor: fp32 CPU tensors that may alias the shadows (on a CPU run), so
  // written before the next update.
  NamedTensors state_tensors() const;
  // Back from state_tensors()' names; throws Error naming a missing or misshapen tensor.
  void load_state(const std::map<std::string, at::Tensor>& tensors);

  // While it lives, the live tensors hold the average and the shadows the trained values; on
  // leaving, both are back, bit for bit. No update, checkpoint or training step may happen inside.
  class Swap {
   public:
    Swap() = default;  // swaps nothing (no EMA)
    explicit Swap(ParameterEma* ema);
    ~Swap();
    Swap(Swap&& other) noexcept : ema_(other.ema_) { other.ema_ = nullptr; }
    Swap& operator=(Swap&&) = delete;
    Swap(const Swap&) = delete;
    Swap& operator=(const Swap&) = delete;

   private:
    ParameterEma* ema_ = nullptr;
  };
  Swap swapped_in() { return Swap(this); }

 private:
  // Exchanges each live tensor's values with its shadow's, one tensor's copy at a time (the only
  // extra memory).
  void exchange();

  std::vector<std::string> names_;
  std::vector<at::Tensor> params_;   // live
  std::vector<at::Tensor> shadows_;  // fp32, on the params' device
  double max_decay_;
};

// The state name of a tensor's shadow in a checkpoint.
std::string ema_state_name(const std::string& name);

}  // namespace xltune
