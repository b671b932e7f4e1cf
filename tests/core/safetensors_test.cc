// The libtorch side of safetensors: round trips of every dtype, zero-copy mapping, misaligned
// files, dtype conversion on load, sharded sets, and determinism of the writer.
#include "core/safetensors.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/atomic_file.h"
#include "core/error.h"
#include "safetensors_test_util.h"
#include "test_util.h"

namespace xltune {
namespace {

using testing_util::ScopedTempDir;
using testing_util::pattern_tensor;
using testing_util::same_bytes;

const StDtype kAllTorchDtypes[] = {
    StDtype::kBool, StDtype::kU8,  StDtype::kI8,  StDtype::kI16, StDtype::kU16, StDtype::kF16,
    StDtype::kBF16, StDtype::kI32, StDtype::kU32, StDtype::kF32, StDtype::kF64, StDtype::kI64,
    StDtype::kU64,  StDtype::kC64, StDtype::kF8_E5M2, StDtype::kF8_E4M3, StDtype::kF8_E8M0,
    StDtype::kF8_E4M3FNUZ, StDtype::kF8_E5M2FNUZ};

NamedTensors every_dtype() {
  NamedTensors out;
  int seed = 0;
  for (StDtype d : kAllTorchDtypes) {
    out.emplace_back(std::string("x.") + dtype_name(d), pattern_tensor(d, {2, 3}, seed++));
  }
  out.emplace_back("empty", at::empty({0, 4}));
  out.emplace_back("scalar", at::full({}, 2.5, at::kDouble));
  return out;
}

TEST(Safetensors, EveryDtypeRoundTripsBitExactly) {
  ScopedTempDir temp("xltune_safetensors");
  const std::string& dir = temp.path();
  NamedTensors tensors = every_dtype();
  save_safetensors(dir + "/all.safetensors", tensors, {{"format", "pt"}, {"ü", "✓"}});
  SafetensorsFile file(dir + "/all.safetensors");
  EXPECT_EQ(file.metadata().at("ü"), "✓");
  ASSERT_EQ(file.entries().size(), tensors.size());
  for (const auto& [name, t] : tensors) {
    EXPECT_TRUE(same_bytes(file.tensor(name), t)) << name;
  }
}

TEST(Safetensors, AlignedTensorsViewTheMappingAndOutliveTheFileObject) {
  ScopedTempDir temp("xltune_safetensors");
  const std::string& dir = temp.path();
  at::Tensor w = at::arange(1000, at::kFloat);
  save_safetensors(dir + "/w.safetensors", {{"w", w}, {"b", at::ones({3}, at::kByte)}});
  at::Tensor view;
  {
    SafetensorsFile file(dir + "/w.safetensors");
    view = file.tensor("w");
    const auto* base = reinterpret_cast<const unsigned char*>(view.data_ptr());
    // A view of the mapping: it points into the file's pages, not a fresh allocation.
    at::Tensor copy = file.tensor_copy("w");
    EXPECT_NE(base, copy.data_ptr());
    EXPECT_TRUE(at::equal(copy, w));
  }
  EXPECT_TRUE(at::equal(view, w)) << "the view must keep the mapping alive";
  view.add_(1);  // copy-on-write: the file is unchanged
  SafetensorsFile again(dir + "/w.safetensors");
  EXPECT_TRUE(at::equal(again.tensor("w"), w));
}

TEST(Safetensors, MisalignedFileIsCopiedNotRejected) {
  // A writer that does not pad its header: data starts at an odd offset.
  std::string header = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  ASSERT_NE((8 + header.size()) % 4, 0u);
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
  float values[2] = {1.5f, -2.0f};
  bytes += header + std::string(reinterpret_cast<char*>(values), 8);
  ScopedTempDir temp("xltune_safetensors");
  const std::string& dir = temp.path();
  write_file_atomic(dir + "/odd.safetensors", bytes);
  SafetensorsFile file(dir + "/odd.safetensors");
  at::Tensor a = file.tensor("a");
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a.data_ptr()) % 4, 0u);
  EXPECT_FLOAT_EQ(a[0].item<float>(), 1.5f);
  EXPECT_FLOAT_EQ(a[1].item<float>(), -2.0f);
}

TEST(Safetensors, ConvertsOnLoad) {
  ScopedTempDir temp("xltune_safetensors");
  const std::string& dir = temp.path();
  at::Tensor w = at::randn({4, 4});
  save_safetensors(dir + "/w.safetensors", {{"w", w}});
  SafetensorsFile file(dir + "/w.safetensors");
  at::Tensor b = file.tensor("w", at::kBFloat16);
  EXPECT_EQ(b.scalar_type(), at::kBFloat16);
  EXPECT_TRUE(at::equal(b, w.to(at::kBFloat16)));
}

TEST(Safetensors, WriterIsDeterministicAndOrdersLikePython) {
  NamedTensors a = every_dtype();
  NamedTensors b(a.rbegin(), a.rend());  // the same tensors given in another order
  std::string sa = serialize_safetensors(a, {{"k", "v"}});
  EXPECT_EQ(sa, serialize_safetensors(b, {{"k", "v"}}));
  // Dtype descending in the format's enum order (element size descending), then name.
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(sa[i]);
  EXPECT_EQ(n % 8, 0u);
  std::string header = sa.substr(8, n);
  EXPECT_LT(header.find("\"x.U64\""), header.find("\"x.C64\""));
  EXPECT_LT(header.find("\"x.C64\""), header.find("\"x.F32\""));
  EXPECT_LT(header.find("\"x.F32\""), header.find("\"x.BF16\""));
  EXPECT_LT(header.find("\"x.BF16\""), header.find("\"x.BOOL\""));
}

TEST(Safetensors, WriterRejectsDuplicatesAndUnsupportedTypes) {
  EXPECT_THROW(serialize_safetensors({{"a", at::ones({1})}, {"a", at::ones({1})}}), Error);
  EXPECT_THROW(serialize_safetensors({{"c", at::ones({1}, at::kComplexDouble)}}), Error);
  EXPECT_THROW(serialize_safetensors({{"__metadata__", at::ones({1})}}), Error);
}

TEST(Safetensors, NonContiguousInputIsWrittenAsItsValues) {
  at::Tensor t = at::arange(12, at::kFloat).reshape({3, 4}).t();
  ScopedTempDir temp("xltune_safetensors");
  const std::string& dir = temp.path();
  save_safetensors(dir + "/t.safetensors", {{"t", t}});
  EXPECT_TRUE(at::equal(SafetensorsFile(dir + "/t.safetensors").tensor("t"), t));
}

TEST(Safetensors, ShardedSetReadsThroughTheIndex) {
  ScopedTempDir temp("xltune_safetensors");
  const std::string& dir = temp.path();
  save_safetensors(dir + "/m-1.safetensors", {{"a", at::ones({2})}, {"b", at::zeros({3})}});
  save_safetensors(dir + "/m-2.safetensors", {{"c", at::full({1}, 7.0)}});
  write_file_atomic(dir + "/m.safetensors.index.json",
                    R"({"metadata":{"total_size":24},"weight_map":{"a":"m-1.safetensors","b":"m-1.safetensors","c":"m-2.safetensors"}})");
  SafetensorsSet set(dir + "/m.safetensors.index.json");
  EXPECT_EQ(set.names().size(), 3u);
  EXPECT_EQ(set.tensor("c").item<float>(), 7.0f);
  EXPECT_EQ(set.metadata().at("total_size"), "24");
  EXPECT_EQ(load_safetensors(dir + "/m.safetensors.index.json").size(), 3u);

  write_file_atomic(dir + "/bad.index.json", R"({"weight_map":{"zzz":"m-1.safetensors"}})");
  EXPECT_THAT([&] { SafetensorsSet bad(dir + "/bad.index.json"); },
              ::testing::ThrowsMessage<Error>(::testing::HasSubstr("'zzz'")));
  write_file_atomic(dir + "/escape.index.json", R"({"weight_map":{"a":"../m-1.safetensors"}})");
  EXPECT_THROW(SafetensorsSet(dir + "/escape.index.json"), Error);
  save_safetensors(dir + "/m-3.safetensors", {{"a", at::ones({2})}});
  write_file_atomic(dir + "/dup.index.json",
                    R"({"weight_map":{"a":"m-1.safetensors","b":"m-1.safetensors","c":"m-3.safetensors"}})");
  EXPECT_THROW(SafetensorsSet(dir + "/dup.index.json"), Error) << "tensor 'a' in two shards";
}

TEST(Safetensors, MissingTensorIsNamed) {
  ScopedTempDir temp("xltune_safetensors");
  const std::string& dir = temp.path();
  save_safetensors(dir + "/w.safetensors", {{"w", at::ones({1})}});
  SafetensorsFile file(dir + "/w.safetensors");
  EXPECT_THAT([&] { file.tensor("nope"); }, ::testing::ThrowsMessage<Error>(::testing::HasSubstr("'nope'")));
}

TEST(Safetensors, SaveFailureLeavesTheOldFile) {
  ScopedTempDir temp("xltune_safetensors");
  const std::string& dir = temp.path();
  save_safetensors(dir + "/w.safetensors", {{"w", at::ones({4})}});
  fault::fail_writes_after(20);
  EXPECT_THROW(save_safetensors(dir + "/w.safetensors", {{"w", at::zeros({1000})}}), Error);
  fault::clear();
  EXPECT_TRUE(at::equal(SafetensorsFile(dir + "/w.safetensors").tensor("w"), at::ones({4})));
}

}  // namespace
}  // namespace xltune
