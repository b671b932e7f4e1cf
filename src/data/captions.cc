#include "data/captions.h"

#include <cctype>
#include <set>
#include <sstream>

#include "core/check.h"
#include "core/log.h"
#include "data/csv.h"
#include "data/entry_path.h"

namespace xltune {

namespace {
bool is_word_byte(char c) {
  auto u = static_cast<unsigned char>(c);
  return std::isalnum(u) || c == '_' || u >= 0x80;
}

std::string lower_ascii(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1);
}

// The first column whose header (trimmed, case-insensitive) is one of `names`; -1 if none.
int find_column(const std::vector<std::string>& header, std::initializer_list<const char*> names) {
  for (const char* n : names)
    for (size_t i = 0; i < header.size(); ++i)
      if (lower_ascii(trim(header[i])) == n) return static_cast<int>(i);
  return -1;
}

std::string join(const std::vector<std::string>& fields) {
  std::string out;
  for (size_t i = 0; i < fields.size(); ++i) out += (i ? "," : "") + fields[i];
  return out;
}

std::string folder_of(const std::string& path) {
  auto pos = path.rfind('/');
  return pos == std::string::npos ? "" : path.substr(0, pos);
}

// Images by full name, base name and lower-case base name, for matching CSV rows.
struct ImageIndex {
  std::set<std::string> names;
  std::map<std::string, std::vector<std::string>> by_base, by_lower_base;

  explicit ImageIndex(const std::vector<IngestedImage>& images) {
    for (const auto& i : images) {
      names.insert(i.name);
      by_base[base_name(i.name)].push_back(i.name);
      by_lower_base[lower_ascii(base_name(i.name))].push_back(i.name);
    }
  }

  // The image a CSV value names: a path relative to the CSV's folder, a path from the top,
  // or a base name that only one image has (preferring images beside the CSV), in that order.
  // Sets *ambiguous when several images fit equally.
  std::optional<std::string> resolve(std::string value, const std::string& dir, bool* ambiguous) const {
    *ambiguous = false;
    for (char& c : value)
      if (c == '\\') c = '/';
    while (value.rfind("./", 0) == 0) value.erase(0, 2);
    if (!dir.empty() && names.count(dir + "/" + value)) return dir + "/" + value;
    if (names.count(value)) return value;
    for (const auto* index : {&by_base, &by_lower_base}) {
      auto key = index == &by_base ? base_name(value) : lower_ascii(base_name(value));
      auto it = index->find(key);
      if (it == index->end()) continue;
      if (it->second.size() == 1) return it->second[0];
      std::vector<std::string> beside;
      for (const auto& n : it->second)
        if (folder_of(n) == dir) beside.push_back(n);
      if (beside.size() == 1) return beside[0];
      *ambiguous = true;
      return std::nullopt;
    }
    return std::nullopt;
  }
};
}  // namespace

const char* caption_source_name(CaptionSource source) {
  switch (source) {
    case CaptionSource::kCsv: return "csv";
    case CaptionSource::kSidecar: return "txt";
    case CaptionSource::kGenerated: return "generated";
    case CaptionSource::kPrefix: return "prefix";
  }
  return "?";
}

CaptionTable::CaptionTable(const std::vector<IngestedImage>& images, const std::vector<IngestedText>& csvs,
                           const std::vector<IngestedText>& sidecars) {
  ImageIndex index(images);
  for (const auto& csv : csvs) {
    std::vector<CsvRow> rows = parse_csv(csv.text, csv.name);
    if (rows.empty()) {
      log_warn("caption file ", csv.name, " is empty; ignored");
      continue;
    }
    const auto& header = rows[0].fields;
    int image_col = find_column(header, {"image_file", "image", "file", "file_name", "filename", "image_path", "path",
                                         "image_name", "img"});
    int caption_col = find_column(header, {"caption", "captions", "text", "prompt"});
    XLTUNE_CHECK(image_col >= 0 && caption_col >= 0, csv.name,
                 ": expected a header row naming the image column (image_file) and the caption column (caption), got '",
                 join(header), "'");
    const size_t needed = static_cast<size_t>(std::max(image_col, caption_col)) + 1;
    const std::string dir = folder_of(csv.name);
    for (size_t r = 1; r < rows.size(); ++r) {
      const CsvRow& row = rows[r];
      const std::string where = csv.name + " line " + std::to_string(row.line);
      if (row.fields.size() < needed) {
        log_warn(where, ": ", row.fields.size(), " fields, expected at least ", needed, "; row ignored");
        continue;
      }
      std::string value = trim(row.fields[static_cast<size_t>(image_col)]);
      std::string caption = tidy_caption(row.fields[static_cast<size_t>(caption_col)]);
      bool ambiguous = false;
      auto image = value.empty() ? std::nullopt : index.resolve(value, dir, &ambiguous);
      if (!image) {
        log_warn(where, ": names '", value, "', ",
                 ambiguous ? "which several images are called (give its folder too)" : "which is not among the images",
                 "; row ignored");
        continue;
      }
      if (caption.empty()) {
        log_warn(where, ": empty caption for '", *image, "'; row ignored");
        continue;
      }
      auto [it, fresh] = by_csv_.emplace(*image, Found{caption, CaptionSource::kCsv, where});
      if (!fresh) {
        log_warn(where, ": '", *image, "' already has a caption (", it->second.from, "); using this later row");
        it->second = Found{caption, CaptionSource::kCsv, where};
      }
    }
  }
  if (!csvs.empty()) {
    std::vector<std::string> missing;
    for (const auto& i : images)
      if (!by_csv_.count(i.name)) missing.push_back(i.name);
    if (!missing.empty()) {
      std::string shown;
      for (size_t k = 0; k < missing.size() && k < 5; ++k) shown += (k ? ", " : "") + missing[k];
      if (missing.size() > 5) shown += ", ...";
      log_warn(missing.size(), " of ", images.size(), " images have no row in the caption CSV (", shown,
               "); they use a .txt sidecar or the caption prefix");
    }
  }
  for (const auto& s : sidecars) {
    std::string text = tidy_caption(s.text);
    if (!text.empty()) by_sidecar_[stem_path(s.name)] = Found{text, CaptionSource::kSidecar, s.name};
  }
}

std::optional<CaptionTable::Found> CaptionTable::find(const std::string& image_name) const {
  if (auto it = by_csv_.find(image_name); it != by_csv_.end()) return it->second;
  if (auto it = by_sidecar_.find(stem_path(image_name)); it != by_sidecar_.end()) return it->second;
  return std::nullopt;
}

bool contains_token(const std::string& text, const std::string& token) {
  return !token.empty() && replace_token(text, token, std::string(1, '\0')) != text;
}

std::string replace_token(const std::string& text, const std::string& token, const std::string& replacement) {
  if (token.empty()) return text;
  const std::string lower_text = lower_ascii(text), lower_token = lower_ascii(token);
  std::string out;
  size_t pos = 0;
  for (;;) {
    size_t at = lower_text.find(lower_token, pos);
    if (at == std::string::npos) break;
    size_t end = at + token.size();
    bool starts_word = at == 0 || !is_word_byte(text[at - 1]) || !is_word_byte(token.front());
    bool ends_word = end == text.size() || !is_word_byte(text[end]) || !is_word_byte(token.back());
    out.append(text, pos, at - pos);
    if (starts_word && ends_word) {
      out += replacement;
    } else {
      out.append(text, at, token.size());
    }
    pos = end;
  }
  out.append(text, pos, std::string::npos);
  return out;
}

std::string restore_trigger(const std::string& caption, const std::string& token) {
  const std::string lower = lower_ascii(token);
  std::istringstream words(caption);
  std::string out;
  for (std::string w; words >> w;) out += (out.empty() ? "" : " ") + (!lower.empty() && w == lower ? token : w);
  return out;
}

std::string replace_literally(std::string text, const std::string& from, const std::string& to) {
  if (from.empty()) return text;
  for (size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size()))
    text.replace(at, from.size(), to);
  return text;
}

std::string tidy_caption(const std::string& text) {
  std::string out;
  bool space = false;
  for (char c : text) {
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
      space = !out.empty();
      continue;
    }
    if (space) out += ' ';
    space = false;
    out += c;
  }
  return out;
}

std::string special_tokens_for(int count) {
  std::string out;
  for (int i = 0; i < count; ++i) out += "<s" + std::to_string(i) + ">";
  return out;
}

void check_caption_options(const CaptionOptions& options) {
  XLTUNE_CHECK(!tidy_caption(options.token_string).empty(), "--token_string: expected a word such as TOK, got an empty one");
  XLTUNE_CHECK(options.token_string.find_first_of(" \t\r\n") == std::string::npos, "--token_string '", options.token_string,
               "': expected one word without spaces");
  if (!contains_token(options.caption_prefix, options.token_string))
    log_warn("--caption_prefix '", options.caption_prefix, "' does not contain the token string '", options.token_string,
             "': images captioned from the prefix will not teach the new tokens (e.g. use 'a photo of ",
             options.token_string, "')");
}

std::string final_caption(const std::optional<CaptionTable::Found>& found, const std::string& generated,
                          const CaptionOptions& options, CaptionSource* source) {
  std::string text;
  const std::string prefix = tidy_caption(options.caption_prefix);
  if (found) {
    text = found->text;
    *source = found->source;
  } else if (!generated.empty()) {
    // As the reference: prefix.strip() + " " + caption.
    text = prefix.empty() ? tidy_caption(generated) : prefix + " " + tidy_caption(generated);
    *source = CaptionSource::kGenerated;
  } else {
    text = prefix;
    *source = CaptionSource::kPrefix;
  }
  return replace_token(text, options.token_string, options.special_tokens);
}

}  // namespace xltune
