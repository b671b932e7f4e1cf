// A tiny random SDXL model on disk for the trainer and export tests (sdxl/random_model.h),
// removed when the test ends.
#pragma once

#include <ATen/ATen.h>

#include <memory>

#include "core/atomic_file.h"
#include "dist/communicator.h"
#include "dist/gradient_reducer.h"
#include "test_util.h"
#include "sdxl/random_model.h"
#include "sdxl/sdxl_model.h"
#include "train/trainer.h"

namespace xltune::train_testing {

class TinyModel {
 public:
  TinyModel() : dir_("tiny_model") {
    write_random_model(dir_.path(), preset_configs("tiny"), 0);
    // The loader checks that tokenizer folders exist; these tests feed token ids directly.
    for (const char* t : {"tokenizer", "tokenizer_2"}) {
      std::filesystem::create_directories(dir_ / t);
      write_file_atomic(dir_ / (std::string(t) + "/vocab.json"), "{}");
      write_file_atomic(dir_ / (std::string(t) + "/merges.txt"), "#version: 0.2\n");
    }
  }
  const std::string& path() const { return dir_.path(); }
  SdxlModel load(bool with_vae = false) const {
    SdxlLoadOptions o;
    o.unet = o.text_encoders = o.vae = at::TensorOptions().dtype(at::kFloat);
    o.with_vae = with_vae;
    return load_sdxl(dir_.path(), o);
  }

 private:
  testing_util::ScopedTempDir dir_;
};

// A batch of `n` samples of 16x16 latents with captions "<s0><s1> ..." at positions `first`...
inline StepBatch tiny_batch(int64_t n, int64_t first = 0, uint64_t seed = 9) {
  at::manual_seed(seed);
  StepBatch b;
  b.latent_mean = at::randn({n, 4, 16, 16});
  b.latent_logvar = at::full({n, 4, 16, 16}, -2.0);
  std::vector<int64_t> ids{49406, 320, 1125, 539, 49408, 49409, 49407};
  ids.resize(77, 49407);
  at::Tensor one = at::tensor(ids, at::kLong);
  b.input_ids_1 = one.repeat({n, 1});
  std::vector<int64_t> ids2(ids.begin(), ids.begin() + 7);
  ids2.resize(77, 0);
  b.input_ids_2 = at::tensor(ids2, at::kLong).repeat({n, 1});
  b.add_time_ids = at::tensor({512.f, 512.f, 0.f, 0.f, 128.f, 128.f}).repeat({n, 1});
  b.mask = at::ones({n, 1, 16, 16});
  for (int64_t i = 0; i < n; ++i) {
    b.positions.push_back(first + i);
    b.caption_keys.push_back(0);
  }
  return b;
}

// One rank's gradient path: the after-backward reducer over a world of one (it reduces nothing).
inline std::shared_ptr<GradientReducer> reducer() {
  static SingleProcessCommunicator comm;
  return std::make_shared<AfterBackwardReducer>(comm);
}

inline TrainerConfig tiny_config(bool lora = true) {
  TrainerConfig c;
  c.is_lora = lora;
  c.lora_rank = 4;
  c.lora_alpha = 4;
  c.lora_lr = 1e-3;
  c.ti_lr = 1e-3;
  c.unet_learning_rate = 1e-4;
  c.max_train_steps = 4;
  c.pivot_step = 2;
  c.seed = 5;
  c.schedule = LrSchedule{LrScheduleKind::kConstant, 0, 4};
  return c;
}

}  // namespace xltune::train_testing
