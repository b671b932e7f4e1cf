#include "job/tokenizers.h"

#include "core/data_files.h"

namespace xltune {

ClipTokenizer load_tokenizer(const std::string& dir, const char* pad) {
  return dir.empty() ? ClipTokenizer::from_bpe_file(clip_vocabulary_file(), pad) : ClipTokenizer::from_folder(dir);
}

}  // namespace xltune
