// What the jobs (train, generate) share about where they run and how they read prompts.
#pragma once

#include <c10/core/Device.h>

#include <string>

#include "text/clip_tokenizer.h"

namespace xltune {

// --device: "auto" (the local rank's GPU when there is one, else the CPU), "cpu", "cuda", or
// "cuda:N". One GPU per rank: the local rank's (CUDA_VISIBLE_DEVICES decides which are seen).
at::Device resolve_device(const std::string& name, int local_rank);

// A model's tokenizer folder, or (empty: a single-file model) the CLIP vocabulary that setup
// installs, padded with `pad` ("<|endoftext|>" for the first encoder, "!" for the second).
ClipTokenizer load_tokenizer(const std::string& dir, const char* pad);

}  // namespace xltune
