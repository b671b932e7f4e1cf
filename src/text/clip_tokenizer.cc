#include "text/clip_tokenizer.h"

#include <zlib.h>

#include <algorithm>
#include <climits>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/check.h"
#include "text/unicode.h"

namespace xltune {

namespace {

constexpr const char* kStartOfText = "<|startoftext|>";
constexpr const char* kEndOfText = "<|endoftext|>";
constexpr const char* kEndOfWord = "</w>";

// GPT-2's bytes_to_unicode: printable bytes map to themselves, the other 68 to U+0100 + n,
// in byte order. Returned in the order of the vocabulary's first 256 entries.
std::vector<std::pair<int, char32_t>> bytes_to_unicode() {
  std::vector<std::pair<int, char32_t>> out;
  std::vector<bool> printable(256, false);
  for (int b = '!'; b <= '~'; ++b) printable[b] = true;
  for (int b = 0xA1; b <= 0xAC; ++b) printable[b] = true;
  for (int b = 0xAE; b <= 0xFF; ++b) printable[b] = true;
  for (int b = 0; b < 256; ++b)
    if (printable[b]) out.emplace_back(b, static_cast<char32_t>(b));
  int n = 0;
  for (int b = 0; b < 256; ++b)
    if (!printable[b]) out.emplace_back(b, static_cast<char32_t>(256 + n++));
  return out;
}

std::string read_gzip(const std::string& path) {
  gzFile file = gzopen(path.c_str(), "rb");
  XLTUNE_CHECK(file != nullptr, "cannot open ", path);
  std::string out;
  char buffer[1 << 16];
  int n;
  while ((n = gzread(file, buffer, sizeof buffer)) > 0) out.append(buffer, static_cast<size_t>(n));
  int err = 0;
  const char* message = gzerror(file, &err);
  gzclose(file);
  XLTUNE_CHECK(n == 0 && err == Z_OK, path, ": not a readable gzip file (", message, ")");
  return out;
}

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(start, end - start);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(std::move(line));
    start = end + 1;
  }
  return lines;
}

// A token in a tokenizer config is a string or {"content": "..."}.
std::string token_text(const nlohmann::json& value) {
  if (value.is_string()) return value.get<std::string>();
  if (value.is_object() && value.contains("content") && value["content"].is_string())
    return value["content"].get<std::string>();
  return "";
}

bool starts_with(const std::vector<char32_t>& text, size_t at, const char* ascii) {
  for (size_t i = 0; ascii[i] != '\0'; ++i)
    if (at + i >= text.size() || text[at + i] != static_cast<char32_t>(ascii[i])) return false;
  return true;
}

// Splits `text` at whole occurrences of `tokens` (leftmost, then longest), calling
// on_text(piece) for the text between them and on_token(index) for each token.
template <typename OnText, typename OnToken>
void split_on_tokens(const std::string& text, const std::vector<std::string>& tokens, OnText on_text,
                     OnToken on_token) {
  size_t start = 0, pos = 0;
  while (pos < text.size()) {
    size_t best = SIZE_MAX, best_len = 0;
    for (size_t t = 0; t < tokens.size(); ++t) {
      const std::string& tok = tokens[t];
      if (!tok.empty() && text.compare(pos, tok.size(), tok) == 0 && tok.size() > best_len) {
        best = t;
        best_len = tok.size();
      }
    }
    if (best == SIZE_MAX) {
      ++pos;
      continue;
    }
    if (pos > start) on_text(text.substr(start, pos - start));
    on_token(best);
    pos += best_len;
    start = pos;
  }
  if (start < text.size()) on_text(text.substr(start));
}

}  // namespace

ClipTokenizer ClipTokenizer::from_bpe_file(const std::string& path, const std::string& pad_token) {
  ClipTokenizer tok;
  std::vector<std::string> lines = split_lines(read_gzip(path));
  // open_clip: merges are lines 1 .. 49152-256-2 (line 0 is a version header).
  constexpr size_t kMerges = 49152 - 256 - 2;
  XLTUNE_CHECK(lines.size() > kMerges, path, ": expected at least ", kMerges + 1, " lines, got ", lines.size());
  std::vector<std::string> vocab;
  for (const auto& [byte, c] : bytes_to_unicode()) vocab.push_back(unicode::encode({c}));
  for (size_t i = 0; i < 256; ++i) vocab.push_back(vocab[i] + kEndOfWord);
  for (size_t i = 1; i <= kMerges; ++i) {
    const std::string& line = lines[i];
    auto space = line.find(' ');
    XLTUNE_CHECK(space != std::string::npos && space > 0 && space + 1 < line.size(), path, ": line ", i + 1,
                 ": expected a merge 'a b', got '", line, "'");
    tok.merge_rank_[line] = static_cast<int>(i - 1);
    vocab.push_back(line.substr(0, space) + line.substr(space + 1));
  }
  vocab.push_back(kStartOfText);
  vocab.push_back(kEndOfText);
  for (size_t i = 0; i < vocab.size(); ++i) {
    tok.vocab_.emplace(vocab[i], static_cast<int64_t>(i));
  }
  tok.id_to_token_ = std::move(vocab);
  tok.finish(pad_token);
  return tok;
}

void ClipTokenizer::write_folder(const std::string& dir) const {
  std::filesystem::create_directories(dir);
  const size_t base = id_to_token_.size() - added_count_;
  nlohmann::ordered_json vocab = nlohmann::ordered_json::object();
  for (size_t i = 0; i < base; ++i) vocab[id_to_token_[i]] = static_cast<int64_t>(i);
  write_file_atomic(dir + "/vocab.json", vocab.dump(-1, ' ', false));
  std::vector<const std::string*> merges(merge_rank_.size());
  for (const auto& [pair, rank] : merge_rank_) merges.at(static_cast<size_t>(rank)) = &pair;
  std::string text = "#version: 0.2\n";
  for (const auto* m : merges) text += *m + "\n";
  write_file_atomic(dir + "/merges.txt", text);
  // Token configs as the hub folders have them (tests/reference/make_clip_tokenizers.py).
  auto token = [](const std::string& content, bool normalized) {
    return nlohmann::ordered_json{{"content", content}, {"lstrip", false}, {"normalized", normalized},
                                  {"rstrip", false}, {"single_word", false}};
  };
  nlohmann::ordered_json config, map;
  if (pad_token_ == kEndOfText) {
    auto added = [&](const std::string& c) {
      auto t = token(c, true);
      t["__type"] = "AddedToken";
      return t;
    };
    config = {{"add_prefix_space", false}, {"bos_token", added(kStartOfText)}, {"clean_up_tokenization_spaces", true},
              {"do_lower_case", true}, {"eos_token", added(kEndOfText)}, {"errors", "replace"},
              {"model_max_length", 77}, {"pad_token", kEndOfText}, {"tokenizer_class", "CLIPTokenizer"},
              {"unk_token", added(kEndOfText)}};
    map = {{"bos_token", token(kStartOfText, true)}, {"eos_token", token(kEndOfText, true)},
           {"pad_token", kEndOfText}, {"unk_token", token(kEndOfText, true)}};
  } else {
    auto special = [&](const std::string& c, bool normalized, bool is_special) {
      auto t = token(c, normalized);
      t["special"] = is_special;
      return t;
    };
    nlohmann::ordered_json decoder = {{std::to_string(pad_id_), special(pad_token_, false, true)},
                                      {std::to_string(bos_id_), special(kStartOfText, true, false)},
                                      {std::to_string(eos_id_), special(kEndOfText, false, false)}};
    config = {{"add_prefix_space", false}, {"added_tokens_decoder", decoder},
              {"additional_special_tokens", nlohmann::ordered_json::array()}, {"bos_token", kStartOfText},
              {"clean_up_tokenization_spaces", true}, {"do_lower_case", true}, {"eos_token", kEndOfText},
              {"errors", "replace"}, {"model_max_length", 77}, {"pad_token", pad_token_},
              {"tokenizer_class", "CLIPTokenizer"}, {"unk_token", kEndOfText}};
    map = {{"bos_token", kStartOfText}, {"eos_token", kEndOfText}, {"pad_token", pad_token_},
           {"unk_token", kEndOfText}};
  }
  write_file_atomic(dir + "/tokenizer_config.json", config.dump(2, ' ', false) + "\n");
  write_file_atomic(dir + "/special_tokens_map.json", map.dump(2, ' ', false) + "\n");
}

ClipTokenizer ClipTokenizer::from_folder(const std::string& dir) {
  ClipTokenizer tok;
  nlohmann::json vocab;
  try {
    vocab = nlohmann::json::parse(read_file(dir + "/vocab.json"));
  } catch (const nlohmann::json::exception& e) {
    XLTUNE_FAIL(dir, "/vocab.json: not valid JSON: ", e.what());
  }
  XLTUNE_CHECK(vocab.is_object() && !vocab.empty(), dir, "/vocab.json: expected an object of token: id");
  tok.id_to_token_.resize(vocab.size());
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    XLTUNE_CHECK(it->is_number_unsigned() && it->get<uint64_t>() < vocab.size(), dir, "/vocab.json: token '",
                 it.key(), "' has id ", it->dump(), ", expected 0 .. ", vocab.size() - 1);
    const auto id = it->get<int64_t>();
    XLTUNE_CHECK(tok.id_to_token_[id].empty(), dir, "/vocab.json: id ", id, " is used twice");
    tok.id_to_token_[id] = it.key();
    tok.vocab_.emplace(it.key(), id);
  }
  std::vector<std::string> lines = split_lines(read_file(dir + "/merges.txt"));
  int rank = 0;
  for (size_t i = 0; i < lines.size(); ++i) {
    const std::string& line = lines[i];
    if (line.empty() || (i == 0 && line.rfind("#version", 0) == 0)) continue;
    auto space = line.find(' ');
    XLTUNE_CHECK(space != std::string::npos && space > 0 && space + 1 < line.size(), dir, "/merges.txt: line ",
                 i + 1, ": expected 'a b', got '", line, "'");
    tok.merge_rank_.emplace(line, rank++);
  }

  // Special tokens: tokenizer_config.json first, then special_tokens_map.json.
  std::string pad = kEndOfText;
  std::vector<std::pair<int64_t, std::string>> added;
  for (const char* name : {"special_tokens_map.json", "tokenizer_config.json"}) {
    std::string path = dir + "/" + name;
    if (!std::ifstream(path).good()) continue;
    nlohmann::json config;
    try {
      config = nlohmann::json::parse(read_file(path));
    } catch (const nlohmann::json::exception& e) {
      XLTUNE_FAIL(path, ": not valid JSON: ", e.what());
    }
    if (config.contains("pad_token") && !token_text(config["pad_token"]).empty()) pad = token_text(config["pad_token"]);
    if (config.contains("added_tokens_decoder") && config["added_tokens_decoder"].is_object()) {
      added.clear();
      for (auto it = config["added_tokens_decoder"].begin(); it != config["added_tokens_decoder"].end(); ++it) {
        int64_t id = std::stoll(it.key());
        if (id >= static_cast<int64_t>(tok.id_to_token_.size())) added.emplace_back(id, token_text(*it));
      }
    }
  }
  tok.finish(pad);
  std::sort(added.begin(), added.end());
  for (const auto& [id, text] : added) {
    auto ids = tok.add_tokens({text});
    XLTUNE_CHECK(ids[0] == id, dir, ": added token '", text, "' has id ", id, " but would get ", ids[0],
                 " (added tokens must continue the vocabulary without gaps)");
  }
  return tok;
}

void ClipTokenizer::finish(const std::string& pad_token) {
  for (const auto& [byte, c] : bytes_to_unicode()) byte_chars_[byte] = unicode::encode({c});
  auto find = [&](const std::string& t) {
    auto it = vocab_.find(t);
    XLTUNE_CHECK(it != vocab_.end(), "tokenizer vocabulary has no token '", t, "'");
    return it->second;
  };
  bos_id_ = find(kStartOfText);
  eos_id_ = find(kEndOfText);
  unk_id_ = eos_id_;
  pad_token_ = pad_token;
  pad_id_ = find(pad_token);
  raw_tokens_ = {kEndOfText};
  if (pad_token != kEndOfText && pad_token != kStartOfText) raw_tokens_.push_back(pad_token);
  normalized_tokens_ = {kStartOfText};
}

std::vector<int64_t> ClipTokenizer::add_tokens(const std::vector<std::string>& tokens) {
  std::vector<int64_t> ids;
  for (const auto& t : tokens) {
    XLTUNE_CHECK(!t.empty(), "cannot add an empty token");
    unicode::decode(t);  // valid UTF-8 or a clear error
    auto it = vocab_.find(t);
    if (it != vocab_.end() && it->second >= static_cast<int64_t>(id_to_token_.size() - added_count_)) {
      ids.push_back(it->second);
      continue;
    }
    const auto id = static_cast<int64_t>(id_to_token_.size());
    id_to_token_.push_back(t);
    vocab_[t] = id;
    normalized_tokens_.push_back(t);
    ++added_count_;
    ids.push_back(id);
  }
  return ids;
}

const std::string& ClipTokenizer::token(int64_t id) const {
  XLTUNE_CHECK(id >= 0 && id < static_cast<int64_t>(id_to_token_.size()), "token id ", id, " is outside 0 .. ",
               id_to_token_.size() - 1);
  return id_to_token_[id];
}

void ClipTokenizer::bpe_piece(const std::string& piece, std::vector<int64_t>& out) const {
  {
    std::lock_guard<std::mutex> lock(cache_->mutex);
    auto it = cache_->ids.find(piece);
    if (it != cache_->ids.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  // Symbols: the byte-level characters of the piece, "</w>" joined to the last.
  std::vector<std::string> symbols;
  for (unsigned char b : piece) symbols.push_back(byte_chars_[b]);
  symbols.back() += kEndOfWord;
  // Merge the lowest-ranked adjacent pair, leftmost first, until none is in the merges.
  std::string key;
  while (symbols.size() > 1) {
    int best_rank = INT_MAX;
    size_t best = 0;
    for (size_t i = 0; i + 1 < symbols.size(); ++i) {
      key.assign(symbols[i]).append(1, ' ').append(symbols[i + 1]);
      auto it = merge_rank_.find(key);
      if (it != merge_rank_.end() && it->second < best_rank) {
        best_rank = it->second;
        best = i;
      }
    }
    if (best_rank == INT_MAX) break;
    symbols[best] += symbols[best + 1];
    symbols.erase(symbols.begin() + static_cast<std::ptrdiff_t>(best) + 1);
  }
  std::vector<int64_t> ids;
  for (const auto& s : symbols) {
    auto it = vocab_.find(s);
    ids.push_back(it == vocab_.end() ? unk_id_ : it->second);
  }
  out.insert(out.end(), ids.begin(), ids.end());
  std::lock_guard<std::mutex> lock(cache_->mutex);
  if (cache_->ids.size() > 100000) cache_->ids.clear();
  cache_->ids.emplace(piece, std::move(ids));
}

// The CLIP split pattern over normalised text; whitespace between matches is dropped.
void ClipTokenizer::tokenize_normalized(const std::string& text, std::vector<int64_t>& out) const {
  static const char* const kContractions[] = {"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"};
  const std::vector<char32_t> cps = unicode::decode(text);
  size_t i = 0;
  while (i < cps.size()) {
    size_t end = i;
    // The pattern's first two alternatives match the special tokens' text (here only when it
    // was not matched as a token: "<|ENDOFTEXT|>" lowercased). The byte-level step after the
    // split then cuts it again with GPT-2's pattern, into "<|", the letters and "|>", each a
    // word of its own. On every other piece GPT-2's pattern changes nothing.
    bool special_text = false;
    for (const char* special : {kStartOfText, kEndOfText}) {
      if (starts_with(cps, i, special)) {
        const std::string s(special);
        bpe_piece("<|", out);
        bpe_piece(s.substr(2, s.size() - 4), out);
        bpe_piece("|>", out);
        i += s.size();
        special_text = true;
        break;
      }
    }
    if (special_text) continue;
    {
      for (const char* c : kContractions) {
        if (starts_with(cps, i, c)) {
          end = i + std::char_traits<char>::length(c);
          break;
        }
      }
    }
    if (end == i) {
      const char32_t c = cps[i];
      if (unicode::is_whitespace(c)) {
        ++i;
        continue;
      }
      if (unicode::is_letter(c)) {
        while (end < cps.size() && unicode::is_letter(cps[end])) ++end;
      } else if (unicode::is_number(c)) {
        end = i + 1;
      } else {
        while (end < cps.size() && !unicode::is_whitespace(cps[end]) && !unicode::is_letter(cps[end]) &&
               !unicode::is_number(cps[end]))
          ++end;
      }
    }
    std::string piece;
    for (size_t k = i; k < end; ++k) unicode::append_utf8(piece, cps[k]);
    bpe_piece(piece, out);
    i = end;
  }
}

std::vector<int64_t> ClipTokenizer::tokenize(const std::string& text) const {
  std::vector<int64_t> out;
  split_on_tokens(
      text, raw_tokens_,
      [&](const std::string& raw) {
        // Normalise as the tokenizers library does: NFC, whitespace runs -> " ", lowercase.
        std::vector<char32_t> cps = unicode::decode(unicode::nfc(raw));
        std::vector<char32_t> collapsed;
        collapsed.reserve(cps.size());
        for (size_t k = 0; k < cps.size(); ++k) {
          if (unicode::is_whitespace(cps[k])) {
            collapsed.push_back(U' ');
            while (k + 1 < cps.size() && unicode::is_whitespace(cps[k + 1])) ++k;
          } else {
            collapsed.push_back(cps[k]);
          }
        }
        const std::string normalized = unicode::encode(unicode::lowercase(collapsed));
        split_on_tokens(
            normalized, normalized_tokens_, [&](const std::string& piece) { tokenize_normalized(piece, out); },
            [&](size_t t) { out.push_back(vocab_.at(normalized_tokens_[t])); });
      },
      [&](size_t t) { out.push_back(vocab_.at(raw_tokens_[t])); });
  return out;
}

std::vector<int64_t> ClipTokenizer::encode(const std::string& text, size_t length) const {
  XLTUNE_CHECK(length >= 2, "encode: length ", length, " leaves no room for BOS and EOS");
  std::vector<int64_t> ids = tokenize(text);
  if (ids.size() > length - 2) ids.resize(length - 2);
  std::vector<int64_t> out;
  out.reserve(length);
  out.push_back(bos_id_);
  out.insert(out.end(), ids.begin(), ids.end());
  out.push_back(eos_id_);
  out.resize(length, pad_id_);
  return out;
}

}  // namespace xltune
