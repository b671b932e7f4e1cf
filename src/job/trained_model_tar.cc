#include "job/trained_model_tar.h"

#include <archive.h>
#include <archive_entry.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>

#include "core/atomic_file.h"
#include "core/check.h"
#include "core/tar_writer.h"

namespace fs = std::filesystem;

namespace xltune {
namespace {

// Where each member the generator uses goes; null for the others (kohya and A1111 copies).
std::string* slot_for(TrainedFiles& f, const std::string& name) {
  if (name == kLoraFile) return &f.lora;
  if (name == kUnetFile) return &f.unet;
  if (name == kEmbeddingsFile) return &f.embeddings;
  if (name == kSpecialParamsFile) return &f.special_params;
  return nullptr;
}

// The trained files of a tar (the flat trained_model.tar of `xltune train` and Replicate).
TrainedFiles files_of_tar(const std::string& tar, const std::string& dir) {
  archive* a = archive_read_new();
  archive_read_support_format_tar(a);
  archive_read_support_filter_all(a);
  XLTUNE_CHECK(archive_read_open_filename(a, tar.c_str(), 1 << 16) == ARCHIVE_OK, "--lora ", tar,
               ": not a readable tar (", archive_error_string(a), ")");
  TrainedFiles f;
  archive_entry* e = nullptr;
  int rc;
  while ((rc = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
    const std::string name = fs::path(archive_entry_pathname(e)).filename().string();
    std::string* slot = slot_for(f, name);
    if (slot == nullptr || archive_entry_filetype(e) != AE_IFREG) continue;
    const int64_t size = archive_entry_size(e);
    XLTUNE_CHECK(size >= 0 && size < (int64_t{1} << 34), "--lora ", tar, ": ", name, " has an impossible size");
    std::string bytes(static_cast<size_t>(size), '\0');
    XLTUNE_CHECK(archive_read_data(a, bytes.data(), bytes.size()) == static_cast<la_ssize_t>(bytes.size()), "--lora ",
                 tar, ": ", name, " is truncated");
    *slot = dir + "/" + name;
    write_file_atomic(*slot, bytes);
  }
  const std::string error = rc == ARCHIVE_EOF ? "" : archive_error_string(a);
  archive_read_free(a);
  XLTUNE_CHECK(error.empty(), "--lora ", tar, ": ", error);
  XLTUNE_CHECK(!f.lora.empty() || !f.unet.empty(), "--lora ", tar, ": has neither ", kLoraFile, " nor ", kUnetFile,
               " (not a ", kTrainedModelTar, "?)");
  return f;
}

}  // namespace

void write_trained_model_tar(const std::string& dir, const std::vector<std::string>& files,
                             const std::string& tar_path) {
  std::vector<TarMember> members;
  for (const auto& f : files) members.push_back(TarMember{f, dir + "/" + f});
  write_tar(tar_path, members);
}

ScopedTempFolder::ScopedTempFolder(const std::string& prefix) {
  std::string pattern = (fs::temp_directory_path() / (prefix + "-XXXXXX")).string();
  XLTUNE_CHECK(::mkdtemp(pattern.data()) != nullptr, "cannot make a temporary folder in ", fs::temp_directory_path());
  path_ = pattern;
}

ScopedTempFolder::~ScopedTempFolder() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

TrainedFiles trained_files(const std::string& path, const std::string& temp) {
  XLTUNE_CHECK(fs::exists(path), "--lora ", path, ": no such file or folder");
  TrainedFiles f;
  if (fs::is_directory(path)) {
    for (const char* name : {kLoraFile, kUnetFile, kEmbeddingsFile, kSpecialParamsFile})
      if (fs::is_regular_file(path + "/" + name)) *slot_for(f, name) = path + "/" + name;
    XLTUNE_CHECK(!f.lora.empty() || !f.unet.empty(), "--lora ", path, ": has neither ", kLoraFile, " nor ", kUnetFile);
    return f;
  }
  const std::string ext = fs::path(path).extension().string();
  if (ext == ".tar") return files_of_tar(path, temp);
  XLTUNE_CHECK(ext == ".safetensors", "--lora ", path, ": expected ", kTrainedModelTar,
               ", an output folder or a .safetensors file");
  f.lora = path;
  return f;
}

}  // namespace xltune
