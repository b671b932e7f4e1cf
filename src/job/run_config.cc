#include "job/run_config.h"

#include <nlohmann/json.hpp>

#include "core/check.h"
#include "job/trainer_setup.h"

namespace xltune {

std::string traveling_dtype_name(at::ScalarType t) {
  return t == at::ScalarType::Undefined ? "none" : t == at::kBFloat16 ? "bf16" : "fp32";
}

std::string run_config_json(const TrainOptions& o, const nlohmann::ordered_json& option_values, const ResolvedRun& run,
                            const Trainer& trainer, const SdxlModel& model,
                            const nlohmann::ordered_json& validation_loss) {
  const TrainerConfig& tc = trainer.config();
  nlohmann::ordered_json rc;
  rc["options"] = option_values;
  rc["options"]["seed"] = run.seed;
  const bool from_steps = o.max_train_steps || !o.num_train_epochs;
  rc["resolved"] = {
      {"seed", run.seed},
      {"seed_was_random", run.seed_was_random},
      {"resolution", run.resolution},
      {"lora_alpha", tc.lora_alpha},
      {"samples", run.samples},
      {"world_size", run.world},
      {"global_batch_size", o.samples_per_rank_step() * run.world},
      {"steps_per_epoch", run.steps_per_epoch},
      {"max_train_steps", run.total_steps},
      {"steps_from", from_steps ? "max_train_steps" : "num_train_epochs"},
      {"epochs", static_cast<double>(run.total_steps) / run.steps_per_epoch},
      {"pivot_step", tc.pivot_step},
      {"lr_scheduler", lr_schedule_name(tc.schedule.kind)},
      {"lr_warmup_steps", tc.schedule.warmup_steps},
      {"prediction_type", model.scheduler.prediction_type == PredictionType::kEpsilon ? "epsilon" : "v_prediction"},
      {"latent_scaling_factor", model.vae_config.scaling_factor},
      {"device", run.placement.device.str()},
      {"frozen_dtype", run.placement.frozen == at::kBFloat16 ? "bf16" : "fp32"},
      {"placement", run.placement.describe()},
      {"cudnn_benchmark", run.placement.cudnn_benchmark},
      {"deterministic", run.placement.deterministic},  // Note [Deterministic mode]
      {"attention", attention_kernel_name(run.placement.attention)},  // Note [Attention kernels]
      {"lora_fused_projections", tc.is_lora && tc.lora_fused_projections},  // Note [LoRA's shared down-projection]
      {"lora_product_dtype", !tc.is_lora ? "none" : tc.lora_product_dtype == at::kBFloat16 ? "bf16" : "fp32"},  // Note [LoRA's product in bf16]
      {"cuda_graph", tc.step_graph == TrainerConfig::StepGraph::kCuda},  // Note [The step as a CUDA graph]
      {"step_graph", tc.step_graph == TrainerConfig::StepGraph::kCuda     ? "cuda"
                     : tc.step_graph == TrainerConfig::StepGraph::kStatic ? "static"
                                                                          : "off"},
      {"trainable_parameters", trainer.trainable_parameter_count()},
      {"grad_reduce_dtype", traveling_dtype_name(run.grad_reduce_dtype)},
      {"zero_gather_dtype", traveling_dtype_name(run.zero_gather_dtype)},
      {"shards", run.shard_dir}};
  nlohmann::ordered_json groups = nlohmann::ordered_json::array();
  for (const auto& g : trainer.groups()) {
    const std::string trained = g.name == "text_embeddings" ? str("1..", tc.pivot_step) : str("1..", run.total_steps);
    groups.push_back({{"name", g.name}, {"lr", g.hyper.lr}, {"betas", {g.hyper.beta1, g.hyper.beta2}},
                      {"eps", g.hyper.eps}, {"weight_decay", g.hyper.weight_decay}, {"tensors", g.tensors},
                      {"parameters", g.parameters}, {"trained_steps", trained}});
  }
  rc["optimizer"] = {{"name", "AdamW"}, {"state_dtype", o.optimizer_state_dtype == at::kBFloat16 ? "bf16" : "fp32"},
                     {"kernel", adamw_kernel_name(tc.adamw_kernel)}, {"max_grad_norm", o.max_grad_norm},
                     {"zero_1", trainer.optimizer_state_sharded()}, {"groups", groups}};
  // Note [EMA of the trained weights]: what the outputs and the validation images are made from.
  if (const ParameterEma* ema = trainer.ema()) {
    rc["ema"] = {{"decay", ema->max_decay()}, {"tensors", ema->names().size()}, {"state_bytes", ema->state_bytes()},
                 {"replicated", true}, {"exported", true}};
  } else {
    rc["ema"] = nullptr;
  }
  rc["validation_loss"] = validation_loss;  // Note [Validation loss]: which images, held out or not
  return rc.dump(2) + "\n";
}

std::string training_summary(const TrainOptions& o, const ResolvedRun& run, const Trainer& trainer) {
  const TrainerConfig& tc = trainer.config();
  return str("training ", run.samples, " images for ", run.total_steps, " steps (", run.steps_per_epoch,
             " per epoch, batch ", o.train_batch_size,
             run.world > 1 ? str(" per rank x ", run.world, " ranks") : std::string(), "), ",
             o.is_lora ? str("LoRA rank ", tc.lora_rank) : std::string("full fine-tuning"), ", ",
             trainer.trainable_parameter_count(), " trainable parameters, pivot after step ", tc.pivot_step, ", on ",
             run.placement.describe(),
             run.world > 1 ? str(", gradients reduced in ", traveling_dtype_name(run.grad_reduce_dtype),
                                 trainer.optimizer_state_sharded()
                                     ? str(", weights all-gathered in ", traveling_dtype_name(run.zero_gather_dtype))
                                     : std::string())
                           : std::string());
}

}  // namespace xltune
