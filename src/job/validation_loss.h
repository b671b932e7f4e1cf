// The validation loss (--validation_loss_steps N, --validation_loss_images M): every N steps and
// at the last, after the optimizer step, the loss on M images at fixed timesteps and fixed noise,
// in metrics.jsonl ("validation_loss"), hence TensorBoard, the progress line and loss.png.
//
// Note [Validation loss]
// Which images. M images are chosen from the seed: the first M of the permutation
// epoch_permutation(N, seed, kValidationLossEpoch) (a key no epoch of the sampler reaches),
// in shard order. They are held out of training (the sampler then runs over the other N - M
// images) when N >= 5 M, so that at most a fifth of a few-image set is given up; below that the
// set is too small to lose images, and the loss is measured on those M training images, which
// says whether the model fits them, not whether it generalises (the log, run_config.json and
// the README say which). The held-out count is part of the run's meaning: a resume must hold out
// the same images (run_identity.h's "held_out").
//
// What is computed. Each image i (its index among the M) at each of the K = 4 fixed timesteps
// t_k = floor((2k + 1) T / 2K) (the midpoints of K equal parts of 0..T-1, so the mean is the
// midpoint rule's estimate of the training loss's expectation over t ~ U{0..T-1}, on its scale),
// with n and epsilon keyed by (seed, k, i) (DrawKind::kValidationLatentSample, kValidationNoise):
// Trainer::validation_loss_term, the plain masked MSE (no min-SNR weight, no offset noise, no
// caption dropout: the model's objective, comparable across runs that train with other options),
// with the weights the validation images use (the EMA's with --use_ema). The value is the mean of
// the M K terms.
//
// On many ranks. The M K terms are shared out, term u = i K + k to rank u mod W; each is a batch of
// one, so it does not depend on which rank computes it or on the others. Each rank puts its terms
// into a vector of M K slots, zeros elsewhere; one all-reduce of those doubles (x + 0 = x: exact)
// gives every rank all of them, and every rank sums them in slot order. So, for the same weights,
// the value is bit-identical on any world size, and a resumed run measures what the run never
// stopped measures. Nothing of training changes: no draw of a step, no gradient, the text cache
// only read (Trainer::validation_loss_term).
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include <c10/core/Device.h>
#include <nlohmann/json.hpp>

#include "dist/communicator.h"
#include "job/train_options.h"
#include "job/training_set.h"
#include "train/trainer.h"

namespace xltune {

// epoch_permutation's key for the choice of images (Note [Validation loss]).
inline constexpr uint64_t kValidationLossEpoch = ~uint64_t{0} - 1;

// The images of the validation loss among `num_samples`: `rows` in ascending order, and whether
// they are held out of training (num_samples >= 5 * their count). `wanted` is clamped to
// num_samples; 0 gives none.
struct ValidationLossImages {
  std::vector<int64_t> rows;
  bool held_out = false;
};
ValidationLossImages choose_validation_loss_images(int64_t num_samples, int64_t wanted, uint64_t seed);

class ValidationLoss {
 public:
  // Off without --validation_loss_steps; else chooses the images from `set` and, when they are
  // held out, takes them out of `set` (whose rows then are the images that train). Rank 0 says
  // which images it measures (`rank0`).
  ValidationLoss(const TrainOptions& o, TrainingSet& set, uint64_t seed, at::Device device, bool rank0);

  bool on() const { return every_ > 0; }
  bool due(int64_t step, int64_t total) const { return on() && (step % every_ == 0 || step == total); }
  // Images held out of training (0: none, or the loss is measured on training images).
  int64_t held_out() const { return images_.held_out ? static_cast<int64_t>(images_.rows.size()) : 0; }
  // Every rank calls it, with the weights of the step; all get the same value (Note [Validation loss]).
  double evaluate(const Trainer& trainer, Communicator& comm) const;
  // run_config.json's "validation_loss": null when off.
  nlohmann::ordered_json describe(const Trainer& trainer) const;

 private:
  int64_t every_ = 0;
  ValidationLossImages images_;
  std::vector<int64_t> shard_samples_;  // the images' samples in the shards
  StepBatch batch_;                     // the M images, positions 0..M-1
  at::Device device_;
};

}  // namespace xltune
