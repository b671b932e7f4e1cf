// One generation request on every rank of a job: the outputs shared out round-robin (output
// i on rank i mod W), each rank making its own with the draws of all (Note [Generation as
// diffusers draws it]), and rank 0 given all of them. `xltune generate` under mpirun and the
// validation images of a training run on many ranks both go through it.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>

#include "dist/communicator.h"
#include "generate/sdxl_pipeline.h"

namespace xltune {

struct RenderedImages {
  at::Tensor pixels;   // [n, H, W, 3] uint8, on rank 0 (undefined elsewhere)
  at::Tensor latents;  // [n, 4, h, w] fp32 on rank 0 when asked for
};

// Every rank calls it with the same request (`only` is filled in here). Collectives run on
// `device` (the communicator's: a GPU for NCCL).
RenderedImages render_on_ranks(SdxlPipeline& pipe, GenerationRequest request, Communicator& comm, at::Device device,
                               bool with_latents, const std::function<void(int64_t, int64_t)>& progress = {});

// Images side by side: [n, H, W, 3] as `columns` per row, rows top to bottom (a grid PNG).
at::Tensor image_grid(const at::Tensor& pixels, int64_t columns);

}  // namespace xltune
