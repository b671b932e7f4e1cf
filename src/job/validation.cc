#include "job/validation.h"

#include <ATen/ATen.h>

#include <chrono>
#include <filesystem>

#include "core/atomic_file.h"
#include "core/log.h"
#include "data/captions.h"
#include "data/png_text.h"
#include "generate/render_on_ranks.h"

namespace fs = std::filesystem;

namespace xltune {

Validation::Validation(const TrainOptions& o, SdxlModel& model, const ClipTokenizer& t1, const ClipTokenizer& t2,
                       uint64_t seed, at::Device device)
    : o_(o), pipe_(model, t1, t2, model.force_zeros_for_empty_prompt), seed_(seed), device_(device) {
  for (const std::string& p : o.validation_prompts)
    prompts_.push_back(replace_literally(p, o.prep.captions.token_string, o.prep.captions.special_tokens));
}

bool Validation::due(int64_t step, int64_t total) const {
  if (prompts_.empty()) return false;
  return step == total || (o_.validation_steps > 0 && step % o_.validation_steps == 0);
}

std::string Validation::render(int64_t step, Communicator& comm) {
  const auto start = std::chrono::steady_clock::now();
  std::vector<at::Tensor> rows;
  for (const auto& prompt : prompts_) {
    GenerationRequest r;
    r.prompt = prompt;
    r.width = r.height = o_.prep.resolution;
    r.num_outputs = o_.num_validation_images;
    r.num_inference_steps = o_.validation_inference_steps;
    r.guidance_scale = o_.validation_guidance_scale;
    r.scheduler = o_.validation_scheduler;
    r.seed = seed_;
    RenderedImages images = render_on_ranks(pipe_, r, comm, device_, false);
    if (comm.rank() == 0) rows.push_back(images.pixels);
  }
  if (comm.rank() != 0) return "";
  const std::string dir = o_.output_dir + "/samples";
  fs::create_directories(dir);
  char name[40];
  std::snprintf(name, sizeof name, "/step-%06lld.png", static_cast<long long>(step));
  at::Tensor grid = image_grid(at::cat(rows), o_.num_validation_images);
  cv::Mat rgb(static_cast<int>(grid.size(0)), static_cast<int>(grid.size(1)), CV_8UC3, grid.data_ptr());
  std::string text;
  for (const auto& p : o_.validation_prompts) text += p + "\n";
  text += "Steps: " + std::to_string(o_.validation_inference_steps) + ", Seed: " + std::to_string(seed_) +
          ", Training step: " + std::to_string(step);
  const std::string png = encode_png_with_text(rgb, {{"parameters", text}});
  write_file_atomic(dir + name, png);
  if (tensorboard_ != nullptr) tensorboard_->image("validation", step, png, rgb.rows, rgb.cols);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  char took[32];
  std::snprintf(took, sizeof took, "%.1f", s);
  log_info("validation: ", dir + name, " (", prompts_.size(), " prompts x ", o_.num_validation_images, " images in ",
           took, " s)");
  return dir + name;
}

}  // namespace xltune
