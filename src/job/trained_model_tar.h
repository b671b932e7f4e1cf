// trained_model.tar, what a trained run hands over (the flat tar of `xltune train` and of
// Replicate's trainer): written here (by the run's end and by `xltune export`) and read back here
// (`xltune generate --lora`, which also takes an output folder or a lone LoRA .safetensors), so
// that one module knows its layout. Its members are the files train/export.h writes, under the
// names spelled there (kLoraFile, ...): export is in train, which may not include job.
#pragma once

#include <string>
#include <vector>

#include "train/export.h"

namespace xltune {

// The tar's own name in an output folder.
constexpr const char* kTrainedModelTar = "trained_model.tar";

// `files` (write_export_files' names, in its order) out of `dir`, as the tar `tar_path`;
// deterministic (core/tar_writer.h), so the same files give the same bytes.
void write_trained_model_tar(const std::string& dir, const std::vector<std::string>& files,
                             const std::string& tar_path);

struct TrainedFiles {
  std::string lora;            // a LoRA .safetensors (any layout read_lora_file knows)
  std::string unet;            // full fine-tuning's unet.safetensors
  std::string embeddings;      // embeddings.pti
  std::string special_params;  // special_params.json
};

// A fresh folder under the system's temporary folder, removed with its contents at scope end.
class ScopedTempFolder {
 public:
  explicit ScopedTempFolder(const std::string& prefix);
  ~ScopedTempFolder();
  ScopedTempFolder(const ScopedTempFolder&) = delete;
  ScopedTempFolder& operator=(const ScopedTempFolder&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// The trained files of `path` (a tar's members are unpacked into `temp`); errors name `path`
// as the --lora value: missing, not a tar, truncated, or holding neither kLoraFile nor
// kUnetFile.
TrainedFiles trained_files(const std::string& path, const std::string& temp);

}  // namespace xltune
