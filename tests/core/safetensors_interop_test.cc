// The C++ half of tests/reference/safetensors_interop.py: reads what Python wrote, bit for bit,
// and writes files for Python to check. Run by ctest between the two Python steps
// (tests/CMakeLists.txt); test_paths::testdata_dir() names the folder.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/safetensors.h"
#include "safetensors_test_util.h"
#include "test_paths.h"

namespace xltune {
namespace {

using testing_util::pattern_tensor;
using testing_util::same_bytes;

std::string interop_dir() { return std::string(xltune::test_paths::testdata_dir()) + "/interop"; }

struct Manifest {
  NamedTensors tensors;
  std::map<std::string, std::string> metadata;
};

Manifest read_manifest(const std::string& path) {
  auto j = nlohmann::json::parse(read_file(path));
  Manifest m;
  for (const auto& t : j["tensors"]) {
    StDtype d;
    EXPECT_TRUE(parse_dtype_name(t["dtype"].get<std::string>(), &d));
    m.tensors.emplace_back(t["name"].get<std::string>(),
                           pattern_tensor(d, t["shape"].get<std::vector<int64_t>>(), t["seed"].get<int>()));
  }
  for (auto it = j["metadata"].begin(); it != j["metadata"].end(); ++it) m.metadata[it.key()] = it->get<std::string>();
  return m;
}

void write_manifest(const std::string& path, const NamedTensors& tensors, const std::vector<int>& seeds,
                    const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json j;
  j["tensors"] = nlohmann::ordered_json::array();
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& t = tensors[i].second;
    j["tensors"].push_back({{"name", tensors[i].first},
                            {"dtype", dtype_name(from_scalar_type(t.scalar_type()))},
                            {"shape", std::vector<int64_t>(t.sizes().begin(), t.sizes().end())},
                            {"seed", seeds[i]}});
  }
  j["metadata"] = metadata;
  write_file_atomic(path, j.dump());
}

class SafetensorsInterop : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = interop_dir();
  }
  std::string dir_;
};

TEST_F(SafetensorsInterop, ReadsEveryPythonTensorBitExactly) {
  for (const char* base : {"py_all_dtypes", "py_metadata"}) {
    Manifest want = read_manifest(dir_ + "/" + base + ".manifest.json");
    SafetensorsFile file(dir_ + "/" + base + ".safetensors");
    EXPECT_EQ(file.metadata(), want.metadata) << base;
    ASSERT_EQ(file.entries().size(), want.tensors.size()) << base;
    for (const auto& [name, t] : want.tensors) {
      EXPECT_TRUE(same_bytes(file.tensor(name), t)) << base << ": " << name;
    }
  }
}

TEST_F(SafetensorsInterop, WritesTheSameBytesAsPython) {
  const std::string path = dir_ + "/py_all_dtypes.safetensors";
  SafetensorsFile file(path);
  NamedTensors loaded = load_safetensors(path);
  EXPECT_EQ(serialize_safetensors(loaded, file.metadata()), read_file(path));
}

TEST_F(SafetensorsInterop, ReadsAShardedModelThroughItsIndex) {
  Manifest want = read_manifest(dir_ + "/sharded/manifest.json");
  SafetensorsSet set(dir_ + "/sharded/model.safetensors.index.json");
  EXPECT_GE(set.files().size(), 2u);
  ASSERT_EQ(set.names().size(), want.tensors.size());
  for (const auto& [name, t] : want.tensors) EXPECT_TRUE(same_bytes(set.tensor(name), t)) << name;
}

TEST_F(SafetensorsInterop, WritesFilesForPythonToCheck) {
  // Every dtype that Python maps to torch (all of ours but F8_E8M0), the odd shapes, a unicode name.
  const std::vector<std::pair<StDtype, std::vector<int64_t>>> specs = {
      {StDtype::kF64, {3, 5}}, {StDtype::kF32, {7}}, {StDtype::kF16, {2, 3, 4}}, {StDtype::kBF16, {3, 5}},
      {StDtype::kI64, {7}}, {StDtype::kI32, {2, 3, 4}}, {StDtype::kI16, {3, 5}}, {StDtype::kI8, {7}},
      {StDtype::kU8, {2, 3, 4}}, {StDtype::kBool, {3, 5}}, {StDtype::kF8_E4M3, {7}}, {StDtype::kF8_E5M2, {2, 3, 4}},
      {StDtype::kF8_E4M3FNUZ, {3, 5}}, {StDtype::kF8_E5M2FNUZ, {7}}, {StDtype::kC64, {2, 3, 4}},
      {StDtype::kU64, {3, 5}}, {StDtype::kU32, {7}}, {StDtype::kU16, {2, 3, 4}},
      {StDtype::kF32, {}}, {StDtype::kI64, {0}}, {StDtype::kBF16, {2, 0, 3}}, {StDtype::kF16, {1, 1, 1, 9}}};
  NamedTensors tensors;
  std::vector<int> seeds;
  for (size_t i = 0; i < specs.size(); ++i) {
    std::string name = "cpp." + std::to_string(i) + "." + dtype_name(specs[i].first);
    if (i == 3) name = "unicode.名前.ü";
    seeds.push_back(static_cast<int>(200 + i));
    tensors.emplace_back(name, pattern_tensor(specs[i].first, specs[i].second, seeds.back()));
  }
  const std::map<std::string, std::string> one_key = {{"format", "pt"}};
  save_safetensors(dir_ + "/cpp_all_dtypes.safetensors", tensors, one_key);
  write_manifest(dir_ + "/cpp_all_dtypes.manifest.json", tensors, seeds, one_key);

  NamedTensors few(tensors.begin(), tensors.begin() + 3);
  std::vector<int> few_seeds(seeds.begin(), seeds.begin() + 3);
  const std::map<std::string, std::string> meta = {
      {"format", "pt"}, {"note", "ünïcödé ✓ 名前"}, {"empty", ""}, {"quote", "a \"q\" \\ b\n"}};
  save_safetensors(dir_ + "/cpp_metadata.safetensors", few, meta);
  write_manifest(dir_ + "/cpp_metadata.manifest.json", few, few_seeds, meta);
}

}  // namespace
}  // namespace xltune
