#include "prep/wordpiece_decoder.h"

#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>
#include <unordered_map>
#include <vector>

#include "core/atomic_file.h"
#include "core/check.h"
#include "prep/hub_config.h"

namespace fs = std::filesystem;

namespace xltune {
namespace {

using Json = nlohmann::json;

Json read_json(const std::string& path) { return parse_config_object(read_file(path), path); }

// A special token's text as tokenizer_config.json or special_tokens_map.json write it: a
// string or {"content": ...}.
std::string token_text(const Json& j) {
  if (j.is_string()) return j.get<std::string>();
  if (j.is_object() && j.contains("content") && j["content"].is_string()) return j["content"].get<std::string>();
  return "";
}

// The tokenizers library's WordPiece cleanup (decoders/wordpiece.rs), on one token.
std::string cleanup(std::string s) {
  static const std::pair<const char*, const char*> kRules[] = {
      {" .", "."},     {" ?", "?"},     {" !", "!"},     {" ,", ","},     {" ' ", "'"},   {" n't", "n't"},
      {" 'm", "'m"},   {" do not", " don't"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
  for (const auto& [from, to] : kRules) {
    const std::string f(from), t(to);
    for (size_t at = s.find(f); at != std::string::npos; at = s.find(f, at + t.size())) s.replace(at, f.size(), t);
  }
  return s;
}

// tokenizer.json's added tokens: (id, text, special).
struct AddedToken {
  int64_t id;
  std::string text;
  bool special;
};
std::vector<AddedToken> added_tokens(const std::string& dir) {
  std::vector<AddedToken> out;
  if (!fs::is_regular_file(dir + "/tokenizer.json")) return out;
  const Json j = read_json(dir + "/tokenizer.json");
  if (!j.contains("added_tokens") || !j["added_tokens"].is_array()) return out;
  for (const Json& t : j["added_tokens"])
    if (t.is_object() && t.contains("id") && t["id"].is_number_integer() && t.contains("content") &&
        t["content"].is_string())
      out.push_back({t["id"].get<int64_t>(), t["content"].get<std::string>(), t.value("special", false)});
  return out;
}

// The texts of the special tokens: BERT's five, and those tokenizer_config.json and
// special_tokens_map.json name (their *_token keys, the additional and extra lists, the added
// tokens marked special).
std::vector<std::string> special_token_texts(const std::string& dir) {
  std::vector<std::string> named{"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
  for (const char* file : {"/tokenizer_config.json", "/special_tokens_map.json"}) {
    if (!fs::is_regular_file(dir + file)) continue;
    const Json j = read_json(dir + file);
    if (!j.is_object()) continue;
    for (const char* key : {"bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"})
      if (j.contains(key)) named.push_back(token_text(j[key]));
    for (const char* key : {"additional_special_tokens", "extra_special_tokens"})
      if (j.contains(key) && j[key].is_array())
        for (const Json& t : j[key]) named.push_back(token_text(t));
    if (j.contains("added_tokens_decoder") && j["added_tokens_decoder"].is_object())
      for (auto it = j["added_tokens_decoder"].begin(); it != j["added_tokens_decoder"].end(); ++it)
        if (it.value().is_object() && it.value().value("special", false)) named.push_back(token_text(it.value()));
  }
  return named;
}

}  // namespace

WordPieceDecoder WordPieceDecoder::from_folder(const std::string& dir) {
  const std::string vocab = dir + "/vocab.txt";
  XLTUNE_CHECK(fs::is_regular_file(vocab), dir, ": no vocab.txt (BLIP's BERT vocabulary, as the hub ships it)");
  WordPieceDecoder d;
  std::unordered_map<std::string, int64_t> ids;
  {
    std::istringstream in(read_file(vocab));
    for (std::string line; std::getline(in, line);) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      ids.emplace(line, static_cast<int64_t>(d.tokens_.size()));
      d.tokens_.push_back(line);
    }
  }
  XLTUNE_CHECK(!d.tokens_.empty(), vocab, ": empty vocabulary");
  for (const AddedToken& t : added_tokens(dir)) {
    XLTUNE_CHECK(t.id >= 0 && t.id < (int64_t{1} << 24), dir, ": token id ", t.id, " out of range");
    if (static_cast<size_t>(t.id) >= d.tokens_.size()) d.tokens_.resize(static_cast<size_t>(t.id) + 1);
    d.tokens_[static_cast<size_t>(t.id)] = t.text;
    ids[t.text] = t.id;
    if (t.special) d.special_.insert(t.id);
  }
  for (const std::string& n : special_token_texts(dir)) {
    auto it = ids.find(n);
    if (!n.empty() && it != ids.end()) d.special_.insert(it->second);
  }
  return d;
}

std::string WordPieceDecoder::decode(const std::vector<int64_t>& ids) const {
  std::string out;
  bool first = true;
  for (int64_t id : ids) {
    if (id < 0 || static_cast<size_t>(id) >= tokens_.size() || special_.count(id)) continue;
    std::string token = tokens_[static_cast<size_t>(id)];
    if (token.empty()) continue;
    if (!first) token = token.rfind("##", 0) == 0 ? token.substr(2) : " " + token;
    first = false;
    out += cleanup(token);
  }
  return out;
}

}  // namespace xltune
