// Captions, in the order the design gives: a row of a caption CSV, matched to the image BY
// FILE NAME; else the image's .txt sidecar; else a generated caption (BLIP, when a Captioner
// is plugged in, core/image_models.h: "<prefix> <generated>", the trigger word restored); else
// the caption prefix alone.
//
// The reference trainer pairs CSV rows with images by sort order and only checks the counts,
// so one missing row shifts every later caption onto the wrong image. Here each row names its
// image (columns image_file/caption, or the synonyms below), rows that name no image and
// images that no row names are warned about, and those images fall back to the next source.
//
// The token string (TOK) becomes the special tokens (<s0><s1>) only as a whole word,
// case-insensitively (BLIP writes "tok"): "a photo of TOK" -> "a photo of <s0><s1>",
// "Tokyo" stays "Tokyo" (the reference makes it "<s0><s1>yo").
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "data/ingest.h"

namespace xltune {

struct CaptionOptions {
  std::string caption_prefix = "a photo of TOK";
  std::string token_string = "TOK";
  std::string special_tokens = "<s0><s1>";
};

enum class CaptionSource { kCsv, kSidecar, kGenerated, kPrefix };
const char* caption_source_name(CaptionSource source);

// Where each image's caption comes from, built once from what ingest collected.
class CaptionTable {
 public:
  // Warns (log_warn) about CSV rows that name no image, ambiguous rows, and images that a
  // CSV exists for but that have no row. Throws Error for a CSV without the needed columns.
  CaptionTable(const std::vector<IngestedImage>& images, const std::vector<IngestedText>& csvs,
               const std::vector<IngestedText>& sidecars);

  struct Found {
    std::string text;  // as written (whitespace tidied), before token replacement
    CaptionSource source;
    std::string from;  // "caption.csv line 4", "a/img.txt"
  };
  // The CSV row or sidecar for an image, or nullopt (then: generated or prefix).
  std::optional<Found> find(const std::string& image_name) const;
  size_t csv_matches() const { return by_csv_.size(); }

 private:
  std::map<std::string, Found> by_csv_;      // image name -> caption
  std::map<std::string, Found> by_sidecar_;  // image stem ("a/img") -> caption
};

// True when `text` holds `token` as a whole word (ASCII case-insensitive; a neighbouring
// letter, digit, '_' or non-ASCII byte makes it part of a longer word).
bool contains_token(const std::string& text, const std::string& token);
// Every whole-word `token` in `text` replaced by `replacement`.
std::string replace_token(const std::string& text, const std::string& token, const std::string& replacement);
// A generated caption with the trigger word as the user wrote it: BLIP writes lower case, so
// each whole word equal to the lower-cased `token` becomes `token` (the reference's " tok " ->
// " TOK ", for any --token_string); whitespace runs become one space. An empty token changes
// only the whitespace.
std::string restore_trigger(const std::string& caption, const std::string& token);
// Every occurrence of `from` replaced by `to`, case-sensitive and inside words too: how the
// reference's predict.py puts the trained tokens into a prompt (prompt.replace("TOK", ...)).
std::string replace_literally(std::string text, const std::string& from, const std::string& to);
// Whitespace runs (line breaks too) to one space, ends trimmed.
std::string tidy_caption(const std::string& text);
// "<s0><s1>" for 2 tokens: the reference trainer's names for the new tokens.
std::string special_tokens_for(int count);

// Warns when the prefix lacks the token string (the captions it makes would not teach the
// new tokens); throws Error for an empty token string.
void check_caption_options(const CaptionOptions& options);
// The caption for an image from the sources above, tokens replaced; `generated` is BLIP's
// output when a captioner ran (empty otherwise).
std::string final_caption(const std::optional<CaptionTable::Found>& found, const std::string& generated,
                          const CaptionOptions& options, CaptionSource* source);

}  // namespace xltune
