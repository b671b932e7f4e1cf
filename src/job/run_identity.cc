#include "job/run_identity.h"

#include <algorithm>
#include <filesystem>

#include "core/atomic_file.h"
#include "core/check.h"
#include "core/crc32c.h"
#include "core/fnv1a.h"
#include "core/state_dict.h"

namespace fs = std::filesystem;

namespace xltune {
namespace {

// The option behind a field of run_meaning, as the user writes it.
std::string option_of(const std::string& field) {
  if (field == "shards") return "--input_images/--shards (the preprocessed images)";
  if (field == "global_batch") return "--train_batch_size (x ranks: the global batch)";
  if (field == "pivot_step") return "--max_train_steps (the pivot)";
  if (field == "aspect_buckets") return "--aspect_buckets/--bucket_step/--max_aspect_ratio";
  if (field == "ema") return "--use_ema/--ema_decay (false, or the EMA's decay)";
  if (field == "held_out")
    return "--validation_loss_steps/--validation_loss_images (the images held out of training)";
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


nlohmann::json run_meaning(const TrainerConfig& tc, const RunData& data) {
  nlohmann::json meaning = {{"model", data.model},
          {"shards", data.shards_id},
          {"input_images", data.input_id},
          {"resolution", data.resolution},
          {"aspect_buckets", data.aspect_buckets},  // absent from older checkpoints: not checked there
          {"global_batch", data.global_batch},
          {"seed", tc.seed},
          {"is_lora", tc.is_lora},
          {"lora_rank", tc.lora_rank},
          {"lora_alpha", tc.lora_alpha},
          {"lora_lr", tc.lora_lr},
          {"ti_lr", tc.ti_lr},
          {"unet_learning_rate", tc.unet_learning_rate},
          {"lr_scheduler", lr_schedule_name(tc.schedule.kind)},
          {"lr_warmup_steps", tc.schedule.warmup_steps},
          {"token_string", data.token_string},
          {"snr_gamma", tc.snr_gamma},
          {"noise_offset", tc.noise_offset},
          {"max_grad_norm", tc.max_grad_norm},
          {"optimizer_state_dtype", tc.optimizer_state_dtype == at::kBFloat16 ? "bf16" : "fp32"},
          // One field: the decay means something only with the EMA on.
          {"ema", tc.use_ema ? nlohmann::json(tc.ema_decay) : nlohmann::json(false)},
          {"pivot_step", tc.pivot_step}};
  // Only when on, so that the checkpoints of runs without it keep resuming (check_meaning).
  if (data.held_out > 0) meaning["held_out"] = data.held_out;
  return meaning;
}

void check_meaning(const nlohmann::json& theirs, const nlohmann::json& ours, const std::string& dir) {
  for (auto it = theirs.begin(); it != theirs.end(); ++it) {
    if (it.key() == "pivot_step" || it.key() == "seed") continue;  // taken from the checkpoint
    XLTUNE_CHECK(ours.contains(it.key()) && ours[it.key()] == it.value(), option_of(it.key()), " ",
                 ours.contains(it.key()) ? ours[it.key()].dump() : "?", ": the checkpoint in ", dir, " was made with ",
                 it.value().dump(), "; a resumed run must mean the same (use another --output_dir, or --resume none ",
                 "to start over)");
  }
  for (const char* key : {"held_out"})
    XLTUNE_CHECK(!ours.contains(key) || theirs.contains(key), option_of(key), " ", ours[key].dump(),
                 ": the checkpoint in ", dir, " was made without it; a resumed run must mean the same (use another ",
                 "--output_dir, or --resume none to start over)");
}

}  // namespace xltune
