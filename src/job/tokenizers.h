// The tokenizers the jobs (train, generate) read prompts with.
#pragma once

#include <string>

#include "text/clip_tokenizer.h"

namespace xltune {

// A model's tokenizer folder, or (empty: a single-file model) the CLIP vocabulary that setup
// installs, padded with `pad` ("<|endoftext|>" for the first encoder, "!" for the second).
ClipTokenizer load_tokenizer(const std::string& dir, const char* pad);

}  // namespace xltune
