// What a run hands over, packed and read back: trained_model.tar as write_trained_model_tar
// writes it, an output folder, a lone .safetensors, and the errors of each. The member names are
// literals here on purpose: they are the format as other tools see it, not the constants.
#include "job/trained_model_tar.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>

#include "core/atomic_file.h"
#include "core/error.h"
#include "test_util.h"

namespace xltune {
namespace {

using testing::HasSubstr;
using testing::ThrowsMessage;
using testing_util::ScopedTempDir;

void write(const std::string& path, const std::string& text) { std::ofstream(path, std::ios::binary) << text; }

TEST(TrainedModelTar, TheMembersTheGeneratorUsesComeBackByteForByte) {
  ScopedTempDir run, temp;
  write(run / "lora.safetensors", "lora bytes");
  write(run / "embeddings.pti", "pti bytes");
  write(run / "special_params.json", "{\"TOK\": \"<s0><s1>\"}");
  write(run / "lora_kohya.safetensors", "kohya bytes");
  write_trained_model_tar(run.path(), {"lora.safetensors", "embeddings.pti", "special_params.json",
                                       "lora_kohya.safetensors"}, run / "trained_model.tar");
  const TrainedFiles f = trained_files(run / "trained_model.tar", temp.path());
  EXPECT_EQ(f.lora, temp / "lora.safetensors");
  EXPECT_EQ(read_file(f.lora), "lora bytes");
  EXPECT_EQ(read_file(f.embeddings), "pti bytes");
  EXPECT_EQ(read_file(f.special_params), "{\"TOK\": \"<s0><s1>\"}");
  EXPECT_TRUE(f.unet.empty());
  // The output folder itself, and a lone LoRA file.
  const TrainedFiles folder = trained_files(run.path(), temp.path());
  EXPECT_EQ(folder.lora, run / "lora.safetensors");
  EXPECT_EQ(folder.special_params, run / "special_params.json");
  EXPECT_EQ(trained_files(run / "lora_kohya.safetensors", temp.path()).lora, run / "lora_kohya.safetensors");
}

TEST(TrainedModelTar, WhatIsNotATrainedRunSaysSo) {
  ScopedTempDir run, temp;
  EXPECT_THAT([&] { trained_files(run / "missing.tar", temp.path()); },
              ThrowsMessage<Error>(HasSubstr("missing.tar: no such file or folder")));
  write(run / "broken.tar", "not a tar at all");
  EXPECT_THAT([&] { trained_files(run / "broken.tar", temp.path()); },
              ThrowsMessage<Error>(HasSubstr("broken.tar: not a readable tar")));
  write(run / "notes.txt", "x");
  write_trained_model_tar(run.path(), {"notes.txt"}, run / "other.tar");
  EXPECT_THAT([&] { trained_files(run / "other.tar", temp.path()); },
              ThrowsMessage<Error>(HasSubstr("has neither lora.safetensors nor unet.safetensors")));
  EXPECT_THAT([&] { trained_files(run / "notes.txt", temp.path()); },
              ThrowsMessage<Error>(HasSubstr("expected trained_model.tar, an output folder or a .safetensors file")));
  EXPECT_THAT([&] { trained_files(temp.path(), temp.path()); },
              ThrowsMessage<Error>(HasSubstr("has neither lora.safetensors nor unet.safetensors")));
}

TEST(TrainedModelTar, TheTemporaryFolderGoesAway) {
  std::string path;
  {
    ScopedTempFolder folder("xltune-test");
    path = folder.path();
    write(path + "/x", "x");
    EXPECT_TRUE(std::filesystem::exists(path + "/x"));
  }
  EXPECT_FALSE(std::filesystem::exists(path));
}

}  // namespace
}  // namespace xltune
