// --dump_steps DIR: what a run trained on, for checking the trainer against another
// implementation (tests/reference/train_parity.py replays it with diffusers + peft):
//
//   DIR/initial/lora.safetensors     the trainable state before step 1, in the export layout
//   DIR/initial/embeddings.pti       (LoRA runs only have lora.safetensors; both have the rows)
//   DIR/step-NNNNNN.safetensors      exactly what entered step N, per sample of this rank:
//       latents [B, C, h, w] (x0, scaled)   noise [B, C, h, w] (with the offset noise)
//       timesteps int64 [B]   input_ids_1, input_ids_2 int64 [B, 77]   add_time_ids [B, 6]
//       mask [B, 1, h, w] (latent size, as multiplied into the squared error)   loss fp32 []
#pragma once

#include <string>

#include "train/export.h"
#include "train/trainer.h"

namespace xltune {

void write_initial_dump(const std::string& dir, const TrainedWeights& initial);
// rank >= 0 (many ranks): "step-NNNNNN.rank-R.safetensors", this rank's samples only.
void write_step_dump(const std::string& dir, int64_t step, const StepBatch& batch, const StepResult& result,
                     int rank = -1);

}  // namespace xltune
