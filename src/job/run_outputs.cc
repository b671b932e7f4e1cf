#include "job/run_outputs.h"

#include <filesystem>

#include "core/check.h"

namespace fs = std::filesystem;

namespace xltune {

TrainedWeights weights_of(const Trainer& trainer, const TrainOptions& o, const SdxlModel& model, int64_t step,
                          int64_t total) {
  TrainedWeights w;
  const TrainerConfig& c = trainer.config();
  w.kind = c.is_lora ? "lora" : "full";
  w.lora_rank = c.lora_rank;
  w.lora_alpha = c.lora_alpha;
  for (const auto& site : trainer.lora().sites())
    w.lora.push_back(LoraTensors{site.module, site.projection, site.adapter->down, site.adapter->up});
  w.rows_1 = trainer.pivotal().rows(0);
  w.rows_2 = trainer.pivotal().rows(1);
  w.token_string = o.prep.captions.token_string;
  w.special_tokens = o.prep.captions.special_tokens;
  if (!c.is_lora)
    for (const auto& item : model.unet->named_parameters()) w.unet.emplace_back(item.key(), item.value());
  w.step = step;
  w.max_train_steps = total;
  w.model = o.model;
  w.training_metadata = {{"ss_training_comment", "trained with xltune"},
                         {"ss_resolution", str("(", o.prep.resolution, ", ", o.prep.resolution, ")")},
                         {"ss_steps", std::to_string(step)},
                         {"ss_max_train_steps", std::to_string(total)},
                         {"ss_seed", std::to_string(c.seed)},
                         {"ss_learning_rate", str(o.lora_lr)},
                         {"ss_text_encoder_lr", str(o.ti_lr)},
                         {"ss_lr_scheduler", o.lr_scheduler},
                         {"ss_lr_warmup_steps", std::to_string(o.lr_warmup_steps)},
                         {"ss_batch_size_per_device", std::to_string(o.train_batch_size)},
                         {"ss_sd_model_name", fs::path(o.model).filename().string()}};
  return w;
}

std::vector<std::string> write_run_files(const Trainer& trainer, const TrainedWeights& w, const std::string& dir,
                                         at::ScalarType unet_dtype) {
  fs::create_directories(dir);
  write_trainer_state(dir + "/trainer_state.safetensors", trainer.trainable_state(), w);
  return write_export_files(w, dir, unet_dtype);
}

}  // namespace xltune
