// The CLIP BPE tokenizer, id for id as transformers' CLIPTokenizer (the `tokenizers`-backed
// one of transformers 5) for both SDXL tokenizers:
//
//   "<|endoftext|>" (and the pad token) matched in the raw text  ->  NFC, whitespace runs -> " ",
//   lowercase  ->  "<|startoftext|>" and added tokens (<s0>, <s1>, ...) matched whole  ->  the
//   CLIP split pattern
//      <|startoftext|>|<|endoftext|>|'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|[^\s\p{L}\p{N}]+
//   -> bytes to unicode  ->  BPE by merge rank, "</w>" on each piece's last symbol  ->  ids
//   encode(): [49406] + at most 75 ids + [49407], padded to 77 with the pad token.
//
// Which tokens match before and which after normalisation is transformers' choice, kept here
// (Note [Which tokens match before normalisation] in docs/design-notes.md):
// it registers the end-of-text token with normalized=False and the others with normalized=True,
// so "<|ENDOFTEXT|>" is split into pieces while "<|STARTOFTEXT|>" and "<S0>" match.
//
// The two SDXL tokenizers differ only in the pad token: "<|endoftext|>" (49407) for the first,
// "!" (0) for the second. The pad token is a special token, so "!" in the text of the second
// tokenizer is matched whole ("hello!" -> [3306, 0], not [3306, 256]), as transformers does.
//
// Unlike open_clip's tokenizer, there is no ftfy.fix_text and no html.unescape: transformers
// 5 has neither, so "&amp;" stays five characters (see tests/reference/clip_tokenizer_cases.py).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace xltune {

class ClipTokenizer {
 public:
  static constexpr size_t kContextLength = 77;

  // A model folder's tokenizer/ or tokenizer_2/: vocab.json, merges.txt, and the special
  // tokens from tokenizer_config.json / special_tokens_map.json (tokens added earlier, as
  // added_tokens_decoder entries of 49408 and above, are added again).
  static ClipTokenizer from_folder(const std::string& dir);
  // open_clip's bpe_simple_vocab_16e6.txt.gz (the same vocabulary); pad "<|endoftext|>" or "!".
  static ClipTokenizer from_bpe_file(const std::string& path, const std::string& pad_token);

  // Writes the tokenizer as an SDXL hub folder has it (vocab.json, merges.txt,
  // tokenizer_config.json, special_tokens_map.json; transformers' CLIPTokenizer loads it): the
  // layout of the stabilityai/stable-diffusion-xl-base-1.0 tokenizer/ folder, or its
  // tokenizer_2/ (pad "!" as a special token) when this tokenizer pads with "!". Added tokens
  // are not written (a trained run's tokens live in embeddings.pti).
  void write_folder(const std::string& dir) const;

  // Adds tokens that are matched whole before BPE (after normalisation); returns their ids,
  // which continue from the vocabulary size (49408, 49409, ...). Adding a token twice returns
  // its existing id.
  std::vector<int64_t> add_tokens(const std::vector<std::string>& tokens);

  // Ids of the text without BOS/EOS, untruncated.
  std::vector<int64_t> tokenize(const std::string& text) const;
  // BOS + first (length-2) ids + EOS, padded to `length`.
  std::vector<int64_t> encode(const std::string& text, size_t length = kContextLength) const;

  int64_t bos_id() const { return bos_id_; }
  int64_t eos_id() const { return eos_id_; }
  int64_t pad_id() const { return pad_id_; }
  const std::string& pad_token() const { return pad_token_; }
  // Vocabulary plus added tokens.
  size_t size() const { return id_to_token_.size(); }
  // The token string of an id (byte-level characters, "</w>" at word ends).
  const std::string& token(int64_t id) const;

 private:
  ClipTokenizer() = default;
  void finish(const std::string& pad_token);
  void bpe_piece(const std::string& piece, std::vector<int64_t>& out) const;
  void tokenize_normalized(const std::string& text, std::vector<int64_t>& out) const;

  std::unordered_map<std::string, int64_t> vocab_;
  std::vector<std::string> id_to_token_;
  std::unordered_map<std::string, int> merge_rank_;  // "left right" -> rank
  std::vector<std::string> raw_tokens_;         // matched in the raw text
  std::vector<std::string> normalized_tokens_;  // matched after normalisation: BOS, then added
  size_t added_count_ = 0;
  std::string pad_token_;
  int64_t bos_id_ = 0, eos_id_ = 0, pad_id_ = 0, unk_id_ = 0;
  std::string byte_chars_[256];  // bytes_to_unicode, as UTF-8

  // Pieces recur (words of captions): BPE results are cached. Shared across copies.
  struct Cache {
    std::mutex mutex;
    std::unordered_map<std::string, std::vector<int64_t>> ids;
  };
  std::shared_ptr<Cache> cache_ = std::make_shared<Cache>();
};

}  // namespace xltune
