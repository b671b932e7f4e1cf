// The CLIP tokenizer: unit checks here, and id-for-id parity with transformers' CLIPTokenizer
// on the corpus of tests/reference/clip_tokenizer_cases.py (ClipTokenizerParity, run by ctest
// after the reference scripts, which write into test_paths::testdata_dir()).
#include "text/clip_tokenizer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/error.h"
#include "test_paths.h"

namespace xltune {
namespace {

// The vocabulary that launch/setup copies from open-clip-torch.
std::string vocab_file() { return std::string(xltune::test_paths::source_dir()) + "/data/vocab/bpe_simple_vocab_16e6.txt.gz"; }
std::string clip_dir() { return std::string(xltune::test_paths::testdata_dir()) + "/clip"; }

class ClipTokenizerTest : public ::testing::Test {
 protected:
  // Loaded once; a failure to load fails each test (never skips it).
  void SetUp() override {
    static const ClipTokenizer loaded = ClipTokenizer::from_bpe_file(vocab_file(), "<|endoftext|>");
    tok1_ = &loaded;
  }
  const ClipTokenizer* tok1_ = nullptr;
};

TEST_F(ClipTokenizerTest, KnownCaption) {
  EXPECT_EQ(tok1_->size(), 49408u);
  EXPECT_EQ(tok1_->tokenize("a photo of a cat"), (std::vector<int64_t>{320, 1125, 539, 320, 2368}));
  std::vector<int64_t> padded = tok1_->encode("a photo of a cat");
  ASSERT_EQ(padded.size(), 77u);
  EXPECT_EQ(padded[0], 49406);
  EXPECT_EQ(padded[6], 49407);
  EXPECT_EQ(padded[76], 49407);
}

TEST_F(ClipTokenizerTest, TruncatesToSeventySevenWithEos) {
  std::string long_text;
  for (int i = 0; i < 200; ++i) long_text += "cat ";
  std::vector<int64_t> ids = tok1_->encode(long_text);
  ASSERT_EQ(ids.size(), 77u);
  EXPECT_EQ(ids[75], 2368);
  EXPECT_EQ(ids[76], 49407);
}

TEST_F(ClipTokenizerTest, AddedTokensMatchWholeAndContinueTheVocabulary) {
  ClipTokenizer tok = *tok1_;
  EXPECT_EQ(tok.add_tokens({"<s0>", "<s1>"}), (std::vector<int64_t>{49408, 49409}));
  EXPECT_EQ(tok.add_tokens({"<s0>"}), (std::vector<int64_t>{49408})) << "adding twice keeps the id";
  std::vector<int64_t> ids = tok.tokenize("a photo of <s0><s1>");
  EXPECT_EQ(ids, (std::vector<int64_t>{320, 1125, 539, 49408, 49409}));
  EXPECT_NE(tok1_->tokenize("<s0>"), (std::vector<int64_t>{49408})) << "copies do not share added tokens";
}

TEST_F(ClipTokenizerTest, SecondTokenizerPadsWithExclamationMark) {
  ClipTokenizer tok2 = ClipTokenizer::from_bpe_file(vocab_file(), "!");
  EXPECT_EQ(tok2.pad_id(), 0);
  std::vector<int64_t> ids = tok2.encode("a cat");
  EXPECT_EQ(ids[3], 49407);
  EXPECT_EQ(ids[4], 0);
}

TEST_F(ClipTokenizerTest, InvalidUtf8IsAClearError) {
  EXPECT_THAT([&] { tok1_->tokenize("bad \xff byte"); },
              ::testing::ThrowsMessage<Error>(::testing::HasSubstr("not valid UTF-8 at byte 4")));
}

TEST_F(ClipTokenizerTest, BadVocabularyFilesAreNamed) {
  EXPECT_THROW(ClipTokenizer::from_bpe_file("/nonexistent/vocab.txt.gz", "!"), Error);
  EXPECT_THROW(ClipTokenizer::from_folder("/nonexistent/tokenizer"), Error);
}

// -- parity with transformers -----------------------------------------------------------------

TEST(ClipTokenizerParity, EveryIdOfEveryCaseMatchesTransformers) {
  const std::string dir = clip_dir();
  nlohmann::json cases = nlohmann::json::parse(read_file(dir + "/tokenizer_cases.json"))["cases"];
  ASSERT_GE(cases.size(), 2000u);
  // Both ways of loading: the model folder's tokenizer files, and open_clip's vocabulary.
  ClipTokenizer folder1 = ClipTokenizer::from_folder(dir + "/tokenizers/tokenizer");
  ClipTokenizer folder2 = ClipTokenizer::from_folder(dir + "/tokenizers/tokenizer_2");
  ClipTokenizer bpe1 = ClipTokenizer::from_bpe_file(vocab_file(), "<|endoftext|>");
  ClipTokenizer bpe2 = ClipTokenizer::from_bpe_file(vocab_file(), "!");
  EXPECT_EQ(folder2.pad_id(), 0);
  for (ClipTokenizer* t : {&folder1, &folder2, &bpe1, &bpe2}) t->add_tokens({"<s0>", "<s1>"});
  size_t mismatches = 0, compared = 0;
  for (const auto& c : cases) {
    const std::string text = c["text"].get<std::string>();
    struct Want {
      ClipTokenizer* tok;
      const char* ids;
      const char* tokens;
    };
    for (const Want& w : {Want{&folder1, "ids_1", "tokens_1"}, Want{&folder2, "ids_2", "tokens_2"},
                          Want{&bpe1, "ids_1", "tokens_1"}, Want{&bpe2, "ids_2", "tokens_2"}}) {
      ++compared;
      auto ids = w.tok->encode(text);
      auto tokens = w.tok->tokenize(text);
      if (ids != c[w.ids].get<std::vector<int64_t>>() || tokens != c[w.tokens].get<std::vector<int64_t>>()) {
        if (++mismatches <= 10) ADD_FAILURE() << "text " << nlohmann::json(text).dump() << " (" << w.ids << ")";
      }
    }
  }
  EXPECT_EQ(mismatches, 0u) << "of " << compared << " encodings";
  std::printf("tokenizer parity: %zu texts, %zu encodings compared, %zu mismatches\n", cases.size(), compared,
              mismatches);
}

}  // namespace
}  // namespace xltune
