// Finding the data files that launch/setup installs into the repository's data/ folder (the
// CLIP vocabulary, sample photos): $XLTUNE_DATA_DIR, else data/ beside the program's build
// folder (<repo>/build/bin/xltune -> <repo>/data), else the source tree the program was built
// from. The error names every place tried and how to fix it.
#pragma once

#include <string>

namespace xltune {

// The path of data/<relative>; throws Error if no candidate folder has it.
std::string find_data_file(const std::string& relative);

// The CLIP BPE vocabulary (open_clip's bpe_simple_vocab_16e6.txt.gz), which is what both SDXL
// tokenizers are built from.
inline std::string clip_vocabulary_file() { return find_data_file("vocab/bpe_simple_vocab_16e6.txt.gz"); }

}  // namespace xltune
