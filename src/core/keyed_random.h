// Random draws keyed by what they are for, not by how many draws came before.
//
// Note [Keyed draws]
// Every random number of a training step comes from its own generator, seeded with
//   splitmix64_mix(... splitmix64_mix(splitmix64_mix(seed) ^ step) ^ position ...) ^ kind
// where `position` is the sample's place in the *global* batch of that step and `kind` says
// what is drawn (the latent sample, the noise, the timestep, ...). Nothing depends on the
// rank, on the world size, or on the order in which draws are made, so:
//   - 2 ranks with batch b draw exactly what 1 rank with batch 2b draws;
//   - a run resumed at step s continues the very same draws (no generator state to save);
//   - turning an option on (noise offset) does not shift the other draws.
// The generator is libtorch's CPU generator (mt19937), so the same key gives the same tensor
// on every machine; draws for a GPU are made on the CPU and copied (they are small).
#pragma once

#include <cstdint>

namespace at {
class Generator;
}

namespace xltune {

enum class DrawKind : uint64_t {
  kLatentSample = 1,  // n in x0 = (mean + exp(logvar / 2) n) * scaling_factor
  kNoise = 2,         // epsilon
  kTimestep = 3,      // t ~ U{0 .. T-1}
  kNoiseOffset = 4,   // the per-channel offset noise (--noise_offset)
  kLoraInit = 5,      // LoRA's A matrices (position: the adapter's index)
  kTokenRowsInit = 6, // new token rows (position: the text encoder's index)
  kRounding = 7,      // stochastic rounding of bf16 optimizer state (position 0: the key of a
                      // hash over the values' positions, Note [Rounding bits from a keyed hash])
  kRandomModel = 8,   // weights of `xltune init-model` (step: a hash of the tensor's name)
  kShardRounding = 9, // the same for ZeRO-1's shards (position: the rank)
  kCaptionToken = 10, // a sampled caption token (step: its position; position: the image's key)
  kCaptionDropout = 11,  // whether a sample trains on the empty prompt (--caption_dropout_rate)
  // The validation loss's fixed draws (Note [Validation loss]; step: the timestep's slot k,
  // position: the image's index among the validation images): n and epsilon.
  kValidationLatentSample = 12,
  kValidationNoise = 13,
};

uint64_t draw_key(uint64_t seed, uint64_t step, uint64_t position, DrawKind kind);
// A fresh CPU generator seeded with draw_key(...).
at::Generator keyed_generator(uint64_t seed, uint64_t step, uint64_t position, DrawKind kind);

}  // namespace xltune
