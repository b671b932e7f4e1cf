// The step's random draws (Note [Keyed draws], core/keyed_random.h) and their way to the device:
// Trainer::draw makes them on the CPU from generators keyed by (seed, step, position),
// draws_to_device stages them for one copy (train/trainer.h).
#include "train/trainer.h"

#include <ATen/ATen.h>

#include <array>
#include <vector>

#include "core/check.h"
#include "core/keyed_random.h"

namespace xltune {

std::array<at::Tensor, 3> draws_to_device(const std::array<at::Tensor, 3>& draws, at::Device device, bool stage) {
  if (!stage) return draws;
  const at::Tensor &latent_sample = draws[0], &noise = draws[1], &timesteps = draws[2];
  XLTUNE_CHECK(latent_sample.scalar_type() == at::kFloat && noise.scalar_type() == at::kFloat &&
                   timesteps.scalar_type() == at::kLong && timesteps.dim() == 1,
               "trainer: draws must be fp32 latent sample and noise and int64 timesteps");
  const int64_t n = latent_sample.numel(), e = noise.numel(), k = timesteps.numel();
  // Pinned: the copy below returns at once and runs on the stream (the caching host allocator
  // keeps the buffer until it has), where pageable memory would make the host wait for the GPU.
  at::Tensor staged = at::empty({n + e + k}, at::TensorOptions().dtype(at::kFloat).pinned_memory(device.is_cuda()));
  staged.narrow(0, 0, n).copy_(latent_sample.reshape({-1}));
  staged.narrow(0, n, e).copy_(noise.reshape({-1}));
  staged.narrow(0, n + e, k).copy_(timesteps);  // below 2^24: exact in fp32
  const at::Tensor moved = staged.to(device, /*non_blocking=*/true);
  return {moved.narrow(0, 0, n).view(latent_sample.sizes()), moved.narrow(0, n, e).view(noise.sizes()),
          moved.narrow(0, n + e, k).to(at::kLong)};
}

Trainer::StepDraws Trainer::draw(int64_t step, const StepBatch& batch) const {
  const auto f32 = at::TensorOptions().dtype(at::kFloat);
  const int64_t b = batch.latent_mean.size(0);
  XLTUNE_CHECK(b >= 1 && static_cast<int64_t>(batch.positions.size()) == b, "trainer: ", batch.positions.size(),
               " positions for a batch of ", b);
  const int64_t c = batch.latent_mean.size(1), h = batch.latent_mean.size(2), w = batch.latent_mean.size(3);
  std::vector<at::Tensor> ns, eps, ts;
  for (int64_t i = 0; i < b; ++i) {
    const uint64_t pos = static_cast<uint64_t>(batch.positions[i]);
    const uint64_t s = static_cast<uint64_t>(step);
    at::Generator gn = keyed_generator(config_.seed, s, pos, DrawKind::kLatentSample);
    ns.push_back(at::randn({c, h, w}, gn, f32));
    at::Generator ge = keyed_generator(config_.seed, s, pos, DrawKind::kNoise);
    at::Tensor e = at::randn({c, h, w}, ge, f32);
    if (config_.noise_offset != 0) {
      at::Generator go = keyed_generator(config_.seed, s, pos, DrawKind::kNoiseOffset);
      e = e + config_.noise_offset * at::randn({c, 1, 1}, go, f32);
    }
    eps.push_back(e);
    at::Generator gt = keyed_generator(config_.seed, s, pos, DrawKind::kTimestep);
    ts.push_back(at::randint(0, schedule_.num_train_timesteps(), {1}, gt, at::TensorOptions().dtype(at::kLong)));
  }
  return {at::stack(ns), at::stack(eps), at::cat(ts)};
}

}  // namespace xltune
