// Token ids back to text for BERT's WordPiece vocabulary (BLIP's captions), as
// `tokenizer.decode(ids, skip_special_tokens=True)` of transformers 5 (the tokenizers library's
// WordPiece decoder) gives it:
//   - special tokens ([PAD], [CLS], [SEP], [MASK], [UNK], BLIP's [DEC] and [ENC], whatever the
//     tokenizer files mark special) and ids the vocabulary does not have are dropped;
//   - a token that starts with "##" joins the previous one without it; any other token after
//     the first gets a leading space;
//   - each token, with its space, is cleaned up on its own (" ." -> ".", " ," -> ",", " !",
//     " ?", " n't" -> "n't", " 's", " 've", " 're", " 'm"): the decoder's cleanup runs per
//     token, so " ' s" stays as it is, as it does in transformers.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_set>
#include <vector>

namespace xltune {

class WordPieceDecoder {
 public:
  // A tokenizer folder: vocab.txt (one token per line, the id is the line's index), and the
  // added and special tokens of tokenizer.json, tokenizer_config.json and
  // special_tokens_map.json where present. Errors name the folder and file.
  static WordPieceDecoder from_folder(const std::string& dir);

  std::string decode(const std::vector<int64_t>& ids) const;
  size_t size() const { return tokens_.size(); }

 private:
  std::vector<std::string> tokens_;  // by id; "" where no token has the id
  std::unordered_set<int64_t> special_;
};

}  // namespace xltune
