#include "job/step_dump.h"

#include <ATen/ATen.h>

#include <cstdio>
#include <filesystem>

namespace xltune {

void write_initial_dump(const std::string& dir, const TrainedWeights& w) {
  const std::string initial = dir + "/initial";
  std::filesystem::create_directories(initial);
  // The export layout, so the replaying side loads it as it would load a trained tar. Full
  // fine-tuning starts from the model's own UNet: only the token rows are new.
  if (w.kind == "lora") {
    write_export_files(w, initial, at::kFloat);
  } else {
    auto f32 = [](const at::Tensor& t) { return t.detach().to(at::kCPU, at::kFloat).contiguous(); };
    save_safetensors(initial + "/" + kEmbeddingsFile,
                     {{"text_encoders_0", f32(w.rows_1)}, {"text_encoders_1", f32(w.rows_2)}});
  }
}

void write_step_dump(const std::string& dir, int64_t step, const StepBatch& b, const StepResult& r, int rank) {
  std::filesystem::create_directories(dir);
  char name[64];
  if (rank < 0) std::snprintf(name, sizeof name, "/step-%06lld.safetensors", static_cast<long long>(step));
  else std::snprintf(name, sizeof name, "/step-%06lld.rank-%d.safetensors", static_cast<long long>(step), rank);
  auto cpu = [](const at::Tensor& t) { return t.detach().cpu().contiguous(); };
  save_safetensors(dir + name, {{"latents", cpu(r.x0)},
                                {"noise", cpu(r.noise)},
                                {"timesteps", cpu(r.timesteps)},
                                {"input_ids_1", cpu(b.input_ids_1)},
                                {"input_ids_2", cpu(b.input_ids_2)},
                                {"add_time_ids", cpu(b.add_time_ids)},
                                {"mask", cpu(b.mask)},
                                {"loss", at::full({}, r.loss, at::kFloat)}});
}

}  // namespace xltune
