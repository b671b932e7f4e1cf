// Captions: CSV rows matched by file name (not by sort order, the reference's bug), sidecars,
// the prefix, whole-word token replacement, and the CSV reader on what spreadsheets write.
#include "data/captions.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/error.h"
#include "data/csv.h"
#include "test_util.h"

namespace xltune {
namespace {

std::vector<IngestedImage> images(std::initializer_list<const char*> names) {
  std::vector<IngestedImage> out;
  for (const char* n : names) out.push_back({n, "/dev/null", ImageFormat::kJpeg, 0});
  return out;
}

struct Built {
  std::unique_ptr<CaptionTable> table;
  std::string warnings;
};
Built build(const std::vector<IngestedImage>& imgs, std::vector<IngestedText> csvs, std::vector<IngestedText> sidecars = {}) {
  testing::internal::CaptureStderr();
  Built b;
  try {
    b.table = std::make_unique<CaptionTable>(imgs, csvs, sidecars);
  } catch (...) {
    testing::internal::GetCapturedStderr();
    throw;
  }
  b.warnings = testing::internal::GetCapturedStderr();
  return b;
}

std::string caption_of(const Built& b, const std::string& name, const CaptionOptions& o = {}) {
  CaptionSource source;
  return final_caption(b.table->find(name), "", o, &source);
}

TEST(Captions, CsvRowsAreMatchedByNameNotByOrder) {
  // The reference sorts the rows and pairs them with the sorted images: with b.jpg's row
  // missing, c's caption would land on b. Here each row goes to the image it names.
  auto b = build(images({"a.jpg", "b.jpg", "c.jpg"}),
                 {{"caption.csv", "image_file,caption\nc.jpg,TOK on a chair\na.jpg,TOK in a field\n"}});
  EXPECT_EQ(caption_of(b, "a.jpg"), "<s0><s1> in a field");
  EXPECT_EQ(caption_of(b, "c.jpg"), "<s0><s1> on a chair");
  EXPECT_EQ(caption_of(b, "b.jpg"), "a photo of <s0><s1>");  // falls back to the prefix
  EXPECT_CONTAINS(b.warnings, "1 of 3 images have no row in the caption CSV (b.jpg)");
}

TEST(Captions, RowsNamingMissingImagesAreWarnedAbout) {
  auto b = build(images({"a.jpg"}), {{"captions.csv", "image_file,caption\na.jpg,x TOK\nghost.png,boo\n,empty name\n"}});
  EXPECT_CONTAINS(b.warnings, "captions.csv line 3: names 'ghost.png', which is not among the images; row ignored");
  EXPECT_CONTAINS(b.warnings, "captions.csv line 4: names ''");
  EXPECT_EQ(caption_of(b, "a.jpg"), "x <s0><s1>");
}

TEST(Captions, ColumnSynonymsOrderAndSpreadsheetQuirks) {
  // BOM, ';' separator, caption column first, quoted field with the separator and a line break.
  auto b = build(images({"a.jpg", "b.jpg"}),
                 {{"caption.csv", "\xEF\xBB\xBFText;File_Name\r\n\"TOK; indoors\r\nat night\";a.jpg\r\n\"say \"\"hi\"\" TOK\";b.jpg"}});
  EXPECT_EQ(caption_of(b, "a.jpg"), "<s0><s1>; indoors at night");
  EXPECT_EQ(caption_of(b, "b.jpg"), "say \"hi\" <s0><s1>");
  EXPECT_EQ(b.warnings, "");
}

TEST(Captions, CsvWithoutTheNeededColumnsIsAnError) {
  EXPECT_THAT([&] { build(images({"a.jpg"}), {{"caption.csv", "name,words\na.jpg,hi\n"}}); },
              ::testing::ThrowsMessage<Error>(::testing::HasSubstr(
                  "caption.csv: expected a header row naming the image column (image_file) and the caption "
                  "column (caption), got 'name,words'")));
}

TEST(Captions, UnterminatedQuoteIsAnErrorNamingTheLine) {
  EXPECT_THAT([&] { build(images({"a.jpg"}), {{"caption.csv", "image_file,caption\na.jpg,\"never closed\n"}}); },
              ::testing::ThrowsMessage<Error>(
                  ::testing::HasSubstr("caption.csv: line 2: a quoted field is never closed")));
}

TEST(Captions, SidecarsAndPrecedence) {
  auto b = build(images({"a.jpg", "b.png", "c.webp", "d/e.jpg"}), {{"caption.csv", "image_file,caption\na.jpg,from csv TOK\n"}},
                 {{"a.txt", "from txt"}, {"b.txt", "  TOK\n on the\tbeach \n"}, {"d/e.txt", "nested TOK"}, {"readme.txt", "x"}});
  CaptionSource s;
  EXPECT_EQ(final_caption(b.table->find("a.jpg"), "", {}, &s), "from csv <s0><s1>");
  EXPECT_EQ(s, CaptionSource::kCsv);
  EXPECT_EQ(final_caption(b.table->find("b.png"), "", {}, &s), "<s0><s1> on the beach");
  EXPECT_EQ(s, CaptionSource::kSidecar);
  EXPECT_EQ(caption_of(b, "d/e.jpg"), "nested <s0><s1>");
  EXPECT_EQ(final_caption(b.table->find("c.webp"), "", {}, &s), "a photo of <s0><s1>");
  EXPECT_EQ(s, CaptionSource::kPrefix);
  // A captioner's output follows the prefix, as in the reference; BLIP's lower-case "tok" is the token.
  EXPECT_EQ(final_caption(b.table->find("c.webp"), "a tok dog on grass", {}, &s), "a photo of <s0><s1> a <s0><s1> dog on grass");
  EXPECT_EQ(s, CaptionSource::kGenerated);
}

TEST(Captions, DuplicateBaseNamesNeedTheirFolder) {
  auto b = build(images({"a/img.jpg", "b/img.jpg", "c/IMG_2.JPG"}),
                 {{"caption.csv", "image_file,caption\nimg.jpg,which one\nb/img.jpg,bee\nimg_2.jpg,case\n"},
                  {"a/captions.csv", "image_file,caption\nimg.jpg,ay\n"}});
  EXPECT_CONTAINS(b.warnings, "caption.csv line 2: names 'img.jpg', which several images are called (give its folder too)");
  EXPECT_EQ(caption_of(b, "a/img.jpg"), "ay");  // the CSV beside it names it by base name
  EXPECT_EQ(caption_of(b, "b/img.jpg"), "bee");
  EXPECT_EQ(caption_of(b, "c/IMG_2.JPG"), "case");  // base name, case-insensitive, when unique
}

TEST(Captions, TheSameImageTwiceKeepsTheLaterRow) {
  auto b = build(images({"a.jpg"}), {{"caption.csv", "image_file,caption\na.jpg,first\n./a.jpg,second\n"}});
  EXPECT_EQ(caption_of(b, "a.jpg"), "second");
  EXPECT_CONTAINS(b.warnings, "already has a caption (caption.csv line 2)");
}

TEST(Captions, TokenIsReplacedOnlyAsAWholeWord) {
  EXPECT_EQ(replace_token("a photo of TOK", "TOK", "<s0><s1>"), "a photo of <s0><s1>");
  EXPECT_EQ(replace_token("TOK in Tokyo, tok.", "TOK", "<s0><s1>"), "<s0><s1> in Tokyo, <s0><s1>.");
  EXPECT_EQ(replace_token("TOKTOK TOK_1 xTOK (TOK)", "TOK", "<s>"), "TOKTOK TOK_1 xTOK (<s>)");
  EXPECT_EQ(replace_token("TOKé TOK", "TOK", "<s>"), "TOKé <s>");  // a non-ASCII letter continues the word
  EXPECT_EQ(replace_token("sks dog", "sks", "<s0>"), "<s0> dog");
  EXPECT_TRUE(contains_token("a photo of tok", "TOK"));
  EXPECT_FALSE(contains_token("a photo of tokyo", "TOK"));
}

TEST(Captions, GeneratedCaptionsGetTheTriggerWordBackAsWritten) {
  EXPECT_EQ(restore_trigger("a tok  sitting\n on a tok", "TOK"), "a TOK sitting on a TOK");
  EXPECT_EQ(restore_trigger("tokyo tok. tok", "TOK"), "tokyo tok. TOK");  // whole words between spaces only
  EXPECT_EQ(restore_trigger("a sks dog", "SkS"), "a SkS dog");
  EXPECT_EQ(restore_trigger(" a  dog ", ""), "a dog");
}

TEST(Captions, PrefixWithoutTheTokenIsWarnedAbout) {
  CaptionOptions o;
  o.caption_prefix = "a photo of";
  testing::internal::CaptureStderr();
  check_caption_options(o);
  EXPECT_CONTAINS(testing::internal::GetCapturedStderr(), "--caption_prefix 'a photo of' does not contain the token string 'TOK'");
  o.token_string = "";
  EXPECT_THROW(check_caption_options(o), Error);
  o.token_string = "two words";
  EXPECT_THROW(check_caption_options(o), Error);
  EXPECT_EQ(special_tokens_for(2), "<s0><s1>");
}

TEST(Csv, ReaderHandlesLineEndsAndBlankLines) {
  auto rows = parse_csv("a,b\r\n\r\n1,\"x\ny\"\r2,3", "t.csv");
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[1].fields, (std::vector<std::string>{"1", "x\ny"}));
  EXPECT_EQ(rows[1].line, 3);
  EXPECT_EQ(rows[2].fields, (std::vector<std::string>{"2", "3"}));
  EXPECT_EQ(rows[2].line, 5);
  EXPECT_THROW(parse_csv("a,\"b\"c\n", "t.csv"), Error);
  EXPECT_EQ(parse_csv("a.jpg, \"x, y\"", "t.csv")[0].fields[1], "x, y");
}

}  // namespace
}  // namespace xltune
