#include "job/run_identity.h"

#include <algorithm>
#include <filesystem>

#include "core/atomic_file.h"
#include "core/check.h"
#include "core/crc32c.h"
#include "core/state_dict.h"
#include "data/latent_cache_file.h"

namespace fs = std::filesystem;

namespace xltune {
namespace {

// The option behind a field of run_meaning, as the user writes it.
std::string option_of(const std::string& field) {
  if (field == "shards") return "--input_images/--shards (the preprocessed images)";
  if (field == "global_batch") return "--train_batch_size (x ranks: the global batch)";
  if (field == "pivot_step") return "--max_train_steps (the pivot)";
  return "--" + field;
}

}  // namespace

std::string file_fingerprint(const std::string& path) {
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  return fingerprint_of(path + ":" + std::to_string(ec ? 0 : size));
}

std::string content_identity(const std::string& path) {
  std::string id;
  const auto add_file = [&id](const fs::path& p, const std::string& name) {
    uint64_t size = 0;
    const uint32_t crc = crc32c_of_file(p.string(), &size);
    id += str(name, ":", size, ":", crc, ";");
  };
  if (fs::is_directory(path)) {
    std::vector<fs::path> files;
    for (const auto& e : fs::recursive_directory_iterator(path))
      if (e.is_regular_file()) files.push_back(e.path());
    std::sort(files.begin(), files.end());
    for (const auto& f : files) add_file(f, fs::relative(f, path).string());
  } else {
    add_file(path, "");
  }
  return "content:" + fingerprint_of(id);
}

std::string vae_fingerprint(const SdxlModel& configs, const std::string& model) {
  if (configs.single_file) return file_fingerprint(model);
  return fingerprint_of(read_file(model + "/vae/config.json") + file_fingerprint(find_safetensors_weights(model + "/vae")));
}


nlohmann::json run_meaning(const TrainOptions& o, const std::string& shards_id, int world, uint64_t seed,
                           int64_t pivot_step, double lora_alpha) {
  return {{"model", o.model},
          {"shards", shards_id},
          {"resolution", o.prep.resolution},
          {"global_batch", o.train_batch_size * world},
          {"seed", seed},
          {"is_lora", o.is_lora},
          {"lora_rank", o.lora_rank},
          {"lora_alpha", lora_alpha},
          {"lora_lr", o.lora_lr},
          {"ti_lr", o.ti_lr},
          {"unet_learning_rate", o.unet_learning_rate},
          {"lr_scheduler", o.lr_scheduler},
          {"lr_warmup_steps", o.lr_warmup_steps},
          {"token_string", o.prep.captions.token_string},
          {"snr_gamma", o.snr_gamma},
          {"noise_offset", o.noise_offset},
          {"max_grad_norm", o.max_grad_norm},
          {"optimizer_state_dtype", o.optimizer_state_dtype},
          {"pivot_step", pivot_step}};
}

void check_meaning(const nlohmann::json& theirs, const nlohmann::json& ours, const std::string& dir) {
  for (auto it = theirs.begin(); it != theirs.end(); ++it) {
    if (it.key() == "pivot_step" || it.key() == "seed") continue;  // taken from the checkpoint
    XLTUNE_CHECK(ours.contains(it.key()) && ours[it.key()] == it.value(), option_of(it.key()), " ",
                 ours.contains(it.key()) ? ours[it.key()].dump() : "?", ": the checkpoint in ", dir, " was made with ",
                 it.value().dump(), "; a resumed run must mean the same (use another --output_dir, or --resume none ",
                 "to start over)");
  }
}

}  // namespace xltune
