// What a trained run hands over, read back: trained_model.tar (the flat tar of `xltune train`
// and of Replicate's trainer; train/export.h writes it, under the names there), an output
// folder, or a lone LoRA .safetensors. `xltune generate --lora` reads it through here.
#pragma once

#include <string>

namespace xltune {

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
// as the --lora value: missing, not a tar, truncated, or holding neither lora.safetensors nor
// unet.safetensors.
TrainedFiles trained_files(const std::string& path, const std::string& temp);

}  // namespace xltune
