#include "job/run_outputs.h"

#include <filesystem>

#include <nlohmann/json.hpp>

#include "core/check.h"
#include "job/loss_plot.h"
#include "job/trained_model_tar.h"

namespace fs = std::filesystem;

namespace xltune {

std::vector<std::string> write_final_outputs(const Trainer& trainer, const TrainOptions& o, const SdxlModel& model,
                                             const MetricsLog& metrics, int64_t samples, int64_t total_steps) {
  // The EMA's weights are the run's output when it keeps one (Note [EMA of the trained weights]).
  const ParameterEma::Swap ema = trainer.ema_weights_in();
  const TrainedWeights w = weights_of(trainer, o, model, total_steps, total_steps);
  std::vector<std::string> files = write_run_files(trainer, w, o.output_dir, o.save_dtype);
  write_loss_plot(o.output_dir + "/loss.png", metrics.losses(),
                  str("xltune ", o.is_lora ? "LoRA" : "full fine-tuning", ": ", samples, " images, ", total_steps,
                      " steps, batch ", o.train_batch_size),
                  metrics.validation_losses());
  write_trained_model_tar(o.output_dir, files, o.output_dir + "/" + kTrainedModelTar);
  return files;
}

const char* const kRunOutputs[11] = {kTrainedModelTar, kTrainerStateFile, kLoraFile, kKohyaLoraFile,
                                     kUnetFile, kEmbeddingsFile, kSdxlEmbeddingsFile, kSpecialParamsFile,
                                     "loss.png", "metrics.jsonl", "run_config.json"};

std::vector<std::string> clear_run_outputs(const std::string& output_dir, int64_t keep_metrics_steps) {
  std::vector<std::string> kept;
  if (keep_metrics_steps > 0 && fs::is_regular_file(output_dir + "/metrics.jsonl")) {
    std::ifstream in(output_dir + "/metrics.jsonl");
    for (std::string line; static_cast<int64_t>(kept.size()) < keep_metrics_steps && std::getline(in, line);)
      kept.push_back(line);
  }
  for (const char* f : kRunOutputs) fs::remove(output_dir + "/" + f);
  if (keep_metrics_steps == 0) fs::remove_all(output_dir + "/" + kTensorBoardDir);
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(output_dir + "/checkpoints", ec))
    if (e.is_directory() && !fs::exists(e.path() / "manifest.json")) fs::remove_all(e.path());
  return kept;
}

MetricsLog::MetricsLog(const std::string& path, const std::vector<std::string>& kept_lines,
                       TensorBoardLog* tensorboard)
    : out_(path, std::ios::out | std::ios::trunc), tensorboard_(tensorboard) {
  XLTUNE_CHECK(out_.good(), "cannot write ", path);
  for (const auto& line : kept_lines) {
    out_ << line << "\n";
    const nlohmann::json j = nlohmann::json::parse(line);
    losses_.push_back(j.value("loss", 0.0));
    note_validation_loss(j);
  }
  out_.flush();
}

void MetricsLog::note_validation_loss(const nlohmann::json& line) {
  if (line.contains("validation_loss") && line["validation_loss"].is_number())
    validation_losses_.emplace_back(line.value("step", int64_t{0}), line["validation_loss"].get<double>());
}

void MetricsLog::append(const std::string& json_line, double loss) {
  out_ << json_line << "\n";
  out_.flush();
  losses_.push_back(loss);
  const nlohmann::json j = nlohmann::json::parse(json_line);
  note_validation_loss(j);
  if (tensorboard_ != nullptr) tensorboard_->scalars_of(j);
}

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
                         {"ss_lr_scheduler", lr_schedule_name(o.lr_scheduler)},
                         {"ss_lr_warmup_steps", std::to_string(o.lr_warmup_steps)},
                         {"ss_batch_size_per_device", std::to_string(o.train_batch_size)},
                         {"ss_sd_model_name", fs::path(o.model).filename().string()}};
  if (c.use_ema) w.training_metadata["xltune_ema_decay"] = str(c.ema_decay);  // the UNet's tensors are the EMA's
  return w;
}

std::vector<std::string> write_run_files(const Trainer& trainer, const TrainedWeights& w, const std::string& dir,
                                         at::ScalarType unet_dtype) {
  fs::create_directories(dir);
  write_trainer_state(dir + "/" + kTrainerStateFile, trainer.trainable_state(), w);
  return write_export_files(w, dir, unet_dtype);
}

}  // namespace xltune
