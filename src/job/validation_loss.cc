#include "job/validation_loss.h"

#include <algorithm>
#include <chrono>

#include "core/check.h"
#include "core/log.h"
#include "data/sampler.h"

namespace xltune {

ValidationLossImages choose_validation_loss_images(int64_t num_samples, int64_t wanted, uint64_t seed) {
  ValidationLossImages out;
  const int64_t m = std::clamp<int64_t>(wanted, 0, num_samples);
  if (m == 0) return out;
  const std::vector<uint64_t> order = epoch_permutation(static_cast<uint64_t>(num_samples), seed, kValidationLossEpoch);
  out.rows.assign(order.begin(), order.begin() + m);
  std::sort(out.rows.begin(), out.rows.end());
  out.held_out = num_samples >= 5 * m;
  return out;
}

ValidationLoss::ValidationLoss(const TrainOptions& o, TrainingSet& set, uint64_t seed, at::Device device, bool rank0)
    : every_(o.validation_loss_steps), device_(device) {
  if (every_ == 0) return;
  const int64_t wanted = o.validation_loss_images.value_or(TrainOptions::kDefaultValidationLossImages);
  images_ = choose_validation_loss_images(set.size(), wanted, seed);
  const TrainingSet images = set.subset(images_.rows);
  shard_samples_ = images.shard_samples;
  std::vector<uint64_t> rows;
  std::vector<int64_t> positions;
  for (int64_t i = 0; i < images.size(); ++i) rows.push_back(static_cast<uint64_t>(i)), positions.push_back(i);
  batch_ = images.batch(rows, positions);
  if (images_.held_out) {
    std::vector<int64_t> rest;
    for (int64_t r = 0; r < set.size(); ++r)
      if (!std::binary_search(images_.rows.begin(), images_.rows.end(), r)) rest.push_back(r);
    set = set.subset(rest);
  }
  if (!rank0) return;
  std::string names;
  for (const auto& s : images.sources) names += (names.empty() ? "" : ", ") + s;
  if (images_.held_out)
    log_info("validation loss every ", every_, " steps on ", images.size(), " held-out images (not trained on): ", names);
  else
    log_info("validation loss every ", every_, " steps on ", images.size(), " training images (", set.size(),
             " images are too few to hold ", images.size(), " out: that takes at least ", 5 * images.size(), "): ", names);
  if (wanted > images.size()) log_info("--validation_loss_images ", wanted, ": the set has ", images.size(), " images");
}

double ValidationLoss::evaluate(const Trainer& trainer, Communicator& comm) const {
  const auto start = std::chrono::steady_clock::now();
  const ParameterEma::Swap ema = trainer.ema_weights_in();  // the weights the validation images use
  const int64_t K = Trainer::kValidationTimesteps;
  const int64_t terms = batch_.latent_mean.size(0) * K;
  std::vector<double> slots(static_cast<size_t>(terms), 0.0);
  for (int64_t u = comm.rank(); u < terms; u += comm.size())
    slots[static_cast<size_t>(u)] = trainer.validation_loss_term(batch_, u / K, u % K);
  slots = all_reduce_sum_values(comm, slots, device_);
  double sum = 0;
  for (double v : slots) sum += v;
  const double loss = sum / static_cast<double>(terms);
  log_debug("validation loss ", loss, " (", terms, " terms in ",
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), " s)");
  return loss;
}

nlohmann::ordered_json ValidationLoss::describe(const Trainer& trainer) const {
  if (!on()) return nullptr;
  return {{"every", every_},
          {"images", static_cast<int64_t>(images_.rows.size())},
          {"held_out", images_.held_out},
          {"shard_samples", shard_samples_},
          {"timesteps", trainer.validation_timesteps()},
          {"loss", "masked MSE, no min-SNR weight, no offset noise"}};
}

}  // namespace xltune
