// Reading and writing safetensors files as libtorch tensors.
//
// Reading memory-maps the file (MAP_PRIVATE): a tensor whose bytes are aligned for its dtype
// is a view of the mapping (no copy; it keeps the mapping alive; writes to it are
// copy-on-write and never reach the file); a misaligned one is copied. Loading into another
// dtype converts one tensor at a time, so a bf16 model never exists as a whole fp32 copy.
//
// A model split over several files ("*.safetensors.index.json", as diffusers and
// transformers write big models) is read through the same class: SafetensorsSet.
//
// Writing is deterministic (same tensors and metadata, same bytes; Note [Safetensors writer byte
// layout] in docs/design-notes.md) and lays the file out
// byte for byte as Python's safetensors does: tensors by dtype descending in the format's enum
// order (largest elements first), then by name; "__metadata__" first in the header, which is
// space-padded to a multiple of 8 so every tensor is aligned. The file is written atomically.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/safetensors_header.h"

namespace at {
class Tensor;
}
namespace c10 {
enum class ScalarType : int8_t;
}

namespace xltune {

class MappedFile;

class SafetensorsFile {
 public:
  // Opens and validates the whole header; the error names the file and what is wrong.
  explicit SafetensorsFile(const std::string& path);
  ~SafetensorsFile();

  const std::string& path() const { return path_; }
  const std::vector<SafetensorsEntry>& entries() const { return header_.tensors; }
  const std::map<std::string, std::string>& metadata() const { return header_.metadata; }
  const SafetensorsEntry* find(const std::string& name) const;
  uint64_t file_size() const;

  // The tensor as stored (CPU). Throws naming the tensor and file if there is none.
  at::Tensor tensor(const std::string& name) const;
  // The tensor converted to `dtype` (a fresh tensor unless the dtype already matches).
  at::Tensor tensor(const std::string& name, c10::ScalarType dtype) const;
  // The tensor in memory of its own (never a view of the file).
  at::Tensor tensor_copy(const std::string& name) const;

 private:
  at::Tensor tensor_from_entry(const SafetensorsEntry& entry) const;

  std::string path_;
  std::shared_ptr<MappedFile> mapping_;
  SafetensorsHeader header_;
  std::map<std::string, size_t> index_;
  uint64_t data_start_ = 0;
};

// One model over one file or many: `path` is a .safetensors file or a *.index.json whose
// "weight_map" names the shards (relative to the index's folder).
class SafetensorsSet {
 public:
  explicit SafetensorsSet(const std::string& path);

  // Names in a stable order (by file, then by offset).
  const std::vector<std::string>& names() const { return names_; }
  bool contains(const std::string& name) const { return where_.count(name) != 0; }
  const SafetensorsEntry& entry(const std::string& name) const;
  const SafetensorsFile& file_of(const std::string& name) const;
  const std::vector<std::unique_ptr<SafetensorsFile>>& files() const { return files_; }
  // The index's own "metadata" (e.g. total_size) for a sharded set; the file's for one file.
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  at::Tensor tensor(const std::string& name) const;
  at::Tensor tensor(const std::string& name, c10::ScalarType dtype) const;

 private:
  std::string path_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, size_t> where_;  // name -> files_ index
  std::vector<std::string> names_;
  std::map<std::string, std::string> metadata_;
};

using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;

// Every tensor of a file (or sharded set), in file order. copy=false: views of the mapping.
NamedTensors load_safetensors(const std::string& path, bool copy = false);

// Writes tensors (any device, any layout: they are made contiguous on the CPU) atomically.
void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata = {});
// The bytes that save_safetensors would write.
std::string serialize_safetensors(const NamedTensors& tensors,
                                  const std::map<std::string, std::string>& metadata = {});

}  // namespace xltune
