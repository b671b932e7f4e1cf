// The training step's contract (docs/training-step.md) where parity with diffusers cannot
// show it: determinism, keyed draws, the pivot, the text cache, the full fine-tuning selection.
// The step's arithmetic itself is checked against diffusers + peft by tests/reference/
// train_parity.py (ctest train.parity_*).
#include "train/trainer.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <map>

#include "core/error.h"
#include "core/keyed_random.h"
#include "diffusion/noise_schedule.h"
#include "dist/communicator.h"
#include "dist/gradient_reducer.h"
#include "train/train_test_util.h"

namespace xltune {
namespace {

using train_testing::reducer;
using train_testing::tiny_batch;
using train_testing::tiny_config;
using train_testing::TinyModel;

NamedTensors run(const TinyModel& tiny, const TrainerConfig& c, int steps, std::vector<StepResult>* results = nullptr) {
  SdxlModel m = tiny.load();
  Trainer t(m, c, 0.13025, reducer());
  for (int s = 1; s <= steps; ++s) {
    StepResult r = t.step(s, tiny_batch(2, 0, 100 + s));
    if (results) results->push_back(r);
  }
  return t.trainable_state();
}

TEST(Trainer, SameSeedSameWeightsBitForBit) {
  TinyModel tiny;
  NamedTensors a = run(tiny, tiny_config(), 3), b = run(tiny, tiny_config(), 3);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(at::equal(a[i].second, b[i].second)) << a[i].first;
  TrainerConfig other = tiny_config();
  other.seed = 6;
  NamedTensors c = run(tiny, other, 3);
  EXPECT_FALSE(at::equal(a[0].second, c[0].second)) << "another seed, another run";
}

TEST(Trainer, DrawsDependOnTheGlobalPositionNotTheBatch) {
  // What makes 2 ranks x batch 1 see what 1 rank x batch 2 sees (Note [Keyed draws]).
  TinyModel tiny;
  SdxlModel m = tiny.load();
  Trainer t(m, tiny_config(), 0.13025, reducer());
  StepBatch both = tiny_batch(2, 0);
  StepResult r2 = t.step(1, both);
  SdxlModel m2 = tiny.load();
  Trainer t2(m2, tiny_config(), 0.13025, reducer());
  StepBatch second = tiny_batch(2, 0);
  // Only the sample at position 1.
  second.latent_mean = both.latent_mean.slice(0, 1, 2), second.latent_logvar = both.latent_logvar.slice(0, 1, 2);
  second.input_ids_1 = both.input_ids_1.slice(0, 1, 2), second.input_ids_2 = both.input_ids_2.slice(0, 1, 2);
  second.add_time_ids = both.add_time_ids.slice(0, 1, 2), second.mask = both.mask.slice(0, 1, 2);
  second.positions = {1};
  second.caption_keys = {0};
  StepResult r1 = t2.step(1, second);
  EXPECT_TRUE(at::equal(r1.noise[0], r2.noise[1]));
  EXPECT_TRUE(at::equal(r1.timesteps[0], r2.timesteps[1]));
  EXPECT_TRUE(at::equal(r1.x0[0], r2.x0[1]));
  EXPECT_FALSE(at::equal(r2.noise[0], r2.noise[1]));
}

TEST(Trainer, TokenRowsTrainUntilThePivotThenTheTextIsCached) {
  TinyModel tiny;
  SdxlModel m = tiny.load();
  Trainer t(m, tiny_config(), 0.13025, reducer());
  const at::Tensor old_table = m.te1->token_embedding->weight.clone();
  std::vector<at::Tensor> rows;
  std::vector<bool> ran;
  rows.push_back(t.pivotal().rows(0).clone());
  for (int s = 1; s <= 4; ++s) {
    StepResult r = t.step(s, tiny_batch(2, 0, s));
    ran.push_back(r.text_encoders_ran);
    rows.push_back(t.pivotal().rows(0).clone());
    EXPECT_EQ(r.learning_rates.back().second, s <= 2 ? 1e-3 : 0.0) << "step " << s;
  }
  EXPECT_FALSE(at::equal(rows[0], rows[1]));
  EXPECT_FALSE(at::equal(rows[1], rows[2]));
  EXPECT_TRUE(at::equal(rows[2], rows[3])) << "frozen from step pivot + 1";
  EXPECT_TRUE(at::equal(rows[3], rows[4]));
  EXPECT_EQ(ran, (std::vector<bool>{true, true, true, false})) << "step 3 fills the cache, step 4 uses it";
  EXPECT_TRUE(at::equal(m.te1->token_embedding->weight, old_table)) << "old rows never change";
  std::map<std::string, int64_t> steps;
  for (const auto& [name, v] : t.checkpoint_tensors())
    if (name.size() > 11 && name.substr(name.size() - 11) == ".adamw_step") steps[name] = v.item<int64_t>();
  EXPECT_EQ(steps.at(t.trainable_state().front().first + ".adamw_step"), 4) << "LoRA steps every step";
  EXPECT_EQ(steps.at("text_encoders_1.adamw_step"), 2) << "rows stepped twice";
}

TEST(PivotalTuning, RowsAreScaledOnceByTheTenthRootOfTheStdRatio) {
  at::manual_seed(4);
  at::Tensor a = at::randn({2, 8}) * 3, b = at::randn({2, 6}) * 0.5;
  const at::Tensor a0 = a.clone(), b0 = b.clone();
  PivotalTuning p(a, b, 1.5, 0.25, 10);
  p.after_optimizer_step();
  EXPECT_TRUE(at::allclose(a, a0 * std::pow(1.5 / a0.std().item<double>(), 0.1), 1e-6, 0));
  EXPECT_TRUE(at::allclose(b, b0 * std::pow(0.25 / b0.std().item<double>(), 0.1), 1e-6, 0));
  EXPECT_TRUE(p.trains_rows(10));
  EXPECT_FALSE(p.trains_rows(11));
}

TEST(Trainer, FullFineTuningTrainsTheReferenceSelection) {
  EXPECT_TRUE(Trainer::full_finetune_trains("down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.weight"));
  EXPECT_TRUE(Trainer::full_finetune_trains("conv_norm_out.weight")) << "'_norm', not '.norm'";
  EXPECT_TRUE(Trainer::full_finetune_trains("down_blocks.0.resnets.0.norm1.bias"));
  EXPECT_FALSE(Trainer::full_finetune_trains("down_blocks.0.resnets.0.norm1.weight"));
  EXPECT_FALSE(Trainer::full_finetune_trains("time_embedding.linear_1.weight"));
  EXPECT_FALSE(Trainer::full_finetune_trains("down_blocks.0.resnets.0.time_emb_proj.weight"));
  TinyModel tiny;
  NamedTensors state = run(tiny, tiny_config(false), 1);
  bool any_unet = false;
  for (const auto& [name, t] : state) any_unet |= name.rfind("unet.", 0) == 0;
  EXPECT_TRUE(any_unet);
}

std::map<std::string, at::Tensor> cloned(const NamedTensors& tensors) {
  std::map<std::string, at::Tensor> out;
  for (const auto& [name, t] : tensors) out[name] = t.clone();
  return out;
}

// Note [EMA of the trained weights]: the trainer updates the average once per step, after the
// optimizer, with diffusers' decay at that step; over the UNet's trained tensors only; in the
// checkpoint, so that a restored trainer continues bit for bit; and swapped in for the outputs.
TEST(Trainer, EmaFollowsTheTrainedUNetTensorsAndResumesExactly) {
  TinyModel tiny;
  TrainerConfig c = tiny_config();
  c.use_ema = true;
  c.ema_decay = 0.9;
  SdxlModel m = tiny.load();
  Trainer t(m, c, 0.13025, reducer());
  ASSERT_NE(t.ema(), nullptr);
  std::map<std::string, at::Tensor> expected;  // float64, from the trainable state after each step
  for (const auto& [name, v] : t.trainable_state())
    if (name.rfind("unet.", 0) == 0) expected[name] = v.to(at::kDouble);
  ASSERT_EQ(t.ema()->names().size(), expected.size()) << "LoRA A and B of every site, not the token rows";
  for (const auto& name : t.ema()->names()) EXPECT_TRUE(expected.count(name)) << name;
  std::map<std::string, at::Tensor> at_step_2;
  for (int s = 1; s <= 4; ++s) {
    t.step(s, tiny_batch(2, 0, 100 + s));
    const double d = s == 1 ? 0.0 : std::min(0.9, s / (9.0 + s));  // (1 + t) / (10 + t), t = s - 1
    for (const auto& [name, v] : t.trainable_state())
      if (expected.count(name)) expected[name] = d * expected[name] + (1 - d) * v.to(at::kDouble);
    if (s == 2) at_step_2 = cloned(t.checkpoint_tensors());
  }
  double worst = 0;
  for (const auto& [name, e] : cloned(t.ema()->state_tensors())) {
    const at::Tensor& want = expected.at(name.substr(4));
    worst = std::max(worst, (e.to(at::kDouble) - want).abs().max().item<double>() /
                                std::max(want.abs().max().item<double>(), 1e-12));
  }
  EXPECT_LT(worst, 1e-5) << "the EMA of the weights after each step (of each tensor's largest value)";
  for (const auto& name : t.ema()->names()) EXPECT_TRUE(at_step_2.count("ema." + name)) << name;

  // Restored at step 2, two more steps: the same bits as the run never stopped.
  SdxlModel m2 = tiny.load();
  Trainer t2(m2, c, 0.13025, reducer());
  t2.restore(at_step_2, 2);
  for (int s = 3; s <= 4; ++s) t2.step(s, tiny_batch(2, 0, 100 + s));
  const std::map<std::string, at::Tensor> a = cloned(t.checkpoint_tensors()), b = cloned(t2.checkpoint_tensors());
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [name, v] : a) EXPECT_TRUE(at::equal(v, b.at(name))) << name;

  // The swap for validation and export: the UNet's tensors are the average, the rows the live ones.
  const std::map<std::string, at::Tensor> live = cloned(t.trainable_state());
  const std::map<std::string, at::Tensor> shadows = cloned(t.ema()->state_tensors());
  {
    const ParameterEma::Swap swap = t.ema_weights_in();
    for (const auto& [name, v] : t.trainable_state()) {
      if (name.rfind("unet.", 0) == 0) EXPECT_TRUE(at::equal(v, shadows.at("ema." + name))) << name;
      else EXPECT_TRUE(at::equal(v, live.at(name))) << name;
    }
  }
  for (const auto& [name, v] : t.trainable_state()) EXPECT_TRUE(at::equal(v, live.at(name))) << name << " restored";
  EXPECT_TRUE(at::equal(cloned(t.ema()->state_tensors()).begin()->second, shadows.begin()->second));
}

TEST(Trainer, EmaCoversFullFineTuningAndIsAbsentWhenOff) {
  TinyModel tiny;
  TrainerConfig c = tiny_config(false);
  c.use_ema = true;
  SdxlModel m = tiny.load();
  Trainer t(m, c, 0.13025, reducer());
  t.step(1, tiny_batch(2));
  size_t unet = 0;
  for (const auto& [name, v] : t.trainable_state()) unet += name.rfind("unet.", 0) == 0 ? 1 : 0;
  ASSERT_NE(t.ema(), nullptr);
  EXPECT_EQ(t.ema()->names().size(), unet);
  SdxlModel m2 = tiny.load();
  Trainer off(m2, tiny_config(), 0.13025, reducer());
  EXPECT_EQ(off.ema(), nullptr);
  for (const auto& [name, v] : off.checkpoint_tensors()) EXPECT_NE(name.rfind("ema.", 0), 0u) << name;
}

// Note [Validation loss]: one term is the plain masked MSE of the UNet's prediction at the fixed
// timestep, with n and epsilon from the keyed generators, computed here from the model's parts
// (neither --snr_gamma nor --noise_offset enters it).
TEST(Trainer, ValidationLossTermIsThePlainMaskedMseAtFixedDraws) {
  TinyModel tiny;
  SdxlModel m = tiny.load();
  TrainerConfig c = tiny_config();
  c.snr_gamma = 5;
  c.noise_offset = 0.1;
  Trainer t(m, c, 0.13025, reducer());
  ASSERT_EQ(m.scheduler.num_train_timesteps, 1000);
  EXPECT_EQ(t.validation_timesteps(), (std::vector<int64_t>{125, 375, 625, 875}));
  StepBatch images = tiny_batch(3, 0, 21);
  at::manual_seed(22);
  images.mask = (at::rand({3, 1, 16, 16}) > 0.3).to(at::kFloat);
  for (int64_t i : {0, 2}) {
    for (int64_t k : {1, 3}) {
      at::NoGradGuard no_grad;
      at::Generator gn = keyed_generator(c.seed, k, i, DrawKind::kValidationLatentSample);
      at::Generator ge = keyed_generator(c.seed, k, i, DrawKind::kValidationNoise);
      const at::Tensor n = at::randn({1, 4, 16, 16}, gn, at::TensorOptions().dtype(at::kFloat));
      const at::Tensor eps = at::randn({1, 4, 16, 16}, ge, at::TensorOptions().dtype(at::kFloat));
      const at::Tensor x0 =
          (images.latent_mean.slice(0, i, i + 1) + at::exp(0.5 * images.latent_logvar.slice(0, i, i + 1)) * n) * 0.13025;
      const at::Tensor ts = at::full({1}, 250 * k + 125, at::TensorOptions().dtype(at::kLong));
      const NoiseSchedule schedule(m.scheduler);
      const ClipTextOutput a = m.te1->forward(images.input_ids_1.slice(0, i, i + 1));
      const ClipTextOutput b = m.te2->forward(images.input_ids_2.slice(0, i, i + 1));
      const at::Tensor pred = m.unet->forward(schedule.add_noise(x0, eps, ts), ts, at::cat({a.penultimate, b.penultimate}, -1),
                                              b.text_embeds, images.add_time_ids.slice(0, i, i + 1));
      const double want =
          ((pred - schedule.target(x0, eps, ts)).pow(2) * images.mask.slice(0, i, i + 1)).mean().item<double>();
      const double got = t.validation_loss_term(images, i, k);
      EXPECT_LT(std::abs(got - want) / want, 1e-6) << "image " << i << ", timestep slot " << k << ": " << got
                                                   << " against " << want;
      EXPECT_EQ(got, t.validation_loss_term(images, i, k)) << "the same weights, the same bits";
    }
  }
  EXPECT_NE(t.validation_loss_term(images, 0, 0), t.validation_loss_term(images, 0, 1));
  EXPECT_THROW(t.validation_loss_term(images, 3, 0), Error);
  EXPECT_THROW(t.validation_loss_term(images, 0, Trainer::kValidationTimesteps), Error);
}

// Measuring the validation loss between steps changes nothing of training: the same weights bit
// for bit, and the text cache (text_encoders_ran) as a run that never measured; the loss moves
// as the weights train.
TEST(Trainer, ValidationLossTermsChangeNothingOfTraining) {
  TinyModel tiny;
  const StepBatch images = tiny_batch(2, 0, 31);
  std::vector<StepResult> plain;
  const NamedTensors untouched = run(tiny, tiny_config(), 4, &plain);
  SdxlModel m = tiny.load();
  Trainer t(m, tiny_config(), 0.13025, reducer());
  std::vector<double> measured{t.validation_loss_term(images, 1, 2)};
  for (int s = 1; s <= 4; ++s) {
    const StepResult r = t.step(s, tiny_batch(2, 0, 100 + s));
    EXPECT_EQ(r.text_encoders_ran, plain[static_cast<size_t>(s - 1)].text_encoders_ran) << "step " << s;
    measured.push_back(t.validation_loss_term(images, 1, 2));
  }
  const NamedTensors state = t.trainable_state();
  ASSERT_EQ(state.size(), untouched.size());
  for (size_t i = 0; i < state.size(); ++i) EXPECT_TRUE(at::equal(state[i].second, untouched[i].second)) << state[i].first;
  for (size_t s = 1; s < measured.size(); ++s) EXPECT_NE(measured[s], measured[s - 1]) << "after step " << s;
}

// The draws travel to the device in one staged copy (pinned on CUDA); staged on the CPU here, the
// values, shapes and dtypes come back as they went, the timesteps through fp32 exactly.
TEST(Trainer, DrawsStagedInOneBufferArriveAsTheyWere) {
  at::Generator g = at::make_generator<at::CPUGeneratorImpl>(4);
  const at::Tensor latent_sample = at::randn({2, 4, 3, 5}, g), noise = at::randn({2, 4, 3, 5}, g);
  const at::Tensor timesteps = at::tensor({999, 0}, at::kLong);
  const std::array<at::Tensor, 3> staged = draws_to_device({latent_sample, noise, timesteps}, at::kCPU, true);
  EXPECT_TRUE(at::equal(staged[0], latent_sample));
  EXPECT_TRUE(at::equal(staged[1], noise));
  EXPECT_TRUE(at::equal(staged[2], timesteps));
  EXPECT_EQ(staged[2].scalar_type(), at::kLong);
  EXPECT_EQ(staged[0].sizes(), latent_sample.sizes());
  EXPECT_EQ(staged[1].data_ptr<float>(), staged[0].data_ptr<float>() + latent_sample.numel()) << "one buffer";
  EXPECT_THROW(draws_to_device({latent_sample, noise, timesteps.to(at::kFloat)}, at::kCPU, true), std::exception);
}

TEST(Trainer, StepsOutsideTheRunAreRefused) {
  TinyModel tiny;
  SdxlModel m = tiny.load();
  Trainer t(m, tiny_config(), 0.13025, reducer());
  EXPECT_THROW(t.step(0, tiny_batch(1)), Error);
  EXPECT_THROW(t.step(5, tiny_batch(1)), Error);
}

// Note [LoRA's shared down-projection]: a run whose adapters share their down-projections is the
// same run to rounding: each trained tensor's change over four steps (through the pivot) against
// the per-adapter run's, relative to that change's largest value.
TEST(Trainer, LoraSharedDownProjectionsTrainTheSameToRounding) {
  TinyModel tiny;
  TrainerConfig fused = tiny_config();
  fused.lora_fused_projections = true;
  std::vector<StepResult> each_steps, fused_steps;
  const NamedTensors start = run(tiny, tiny_config(), 0);
  const NamedTensors each = run(tiny, tiny_config(), 4, &each_steps), grouped = run(tiny, fused, 4, &fused_steps);
  ASSERT_EQ(each.size(), grouped.size());
  ASSERT_EQ(each.size(), start.size());
  double worst = 0;
  int64_t moved = 0;
  for (size_t i = 0; i < each.size(); ++i) {
    ASSERT_EQ(each[i].first, grouped[i].first);
    const at::Tensor change = each[i].second - start[i].second;
    const double scale = change.abs().max().item<double>();
    if (scale == 0) {
      EXPECT_TRUE(at::equal(grouped[i].second, start[i].second)) << each[i].first;
      continue;
    }
    ++moved;
    const double err = (grouped[i].second - each[i].second).abs().max().item<double>() / scale;
    EXPECT_LT(err, 1e-3) << each[i].first;  // a few times the largest measured (2.1e-4: AdamW divides by
                                            // the gradients' own scale, so their last bits count)
    worst = std::max(worst, err);
  }
  EXPECT_GT(moved, 10);
  for (size_t s = 0; s < each_steps.size(); ++s)
    EXPECT_NEAR(fused_steps[s].loss, each_steps[s].loss, 1e-6 * std::abs(each_steps[s].loss)) << "step " << s + 1;
  std::printf("[ measured ] shared LoRA down-projections, 4 steps: largest relative difference of a change %.3g\n",
              worst);
}

// Note [LoRA's product in bf16]: a run with the product in bf16 is the fp32 run to bf16's rounding:
// each trained tensor's change over four steps (through the pivot) against the fp32 run's,
// relative to that change's largest value, and the losses.
TEST(Trainer, LoraBf16ProductTrainsTheSameToBf16Rounding) {
  TinyModel tiny;
  TrainerConfig bf16 = tiny_config();
  bf16.lora_product_dtype = at::kBFloat16;
  std::vector<StepResult> fp32_steps, bf16_steps;
  const NamedTensors start = run(tiny, tiny_config(), 0);
  const NamedTensors fp32 = run(tiny, tiny_config(), 4, &fp32_steps), low = run(tiny, bf16, 4, &bf16_steps);
  ASSERT_EQ(fp32.size(), low.size());
  // AdamW's first steps move each value by about lr sign(g): where a gradient is near 0, bf16's
  // rounding flips that sign, so one value may differ by its whole change. The measure is the
  // change of all trained values together: ||change_bf16 - change_fp32|| / ||change_fp32||.
  double diff2 = 0, change2 = 0;
  for (size_t i = 0; i < fp32.size(); ++i) {
    ASSERT_EQ(fp32[i].first, low[i].first);
    diff2 += (low[i].second - fp32[i].second).to(at::kDouble).pow(2).sum().item<double>();
    change2 += (fp32[i].second - start[i].second).to(at::kDouble).pow(2).sum().item<double>();
  }
  ASSERT_GT(change2, 0);
  const double rel = std::sqrt(diff2 / change2);
  EXPECT_LT(rel, 5e-2);  // a few times the measured (1.8e-2)
  EXPECT_GT(rel, 0) << "the bf16 product changed nothing";
  for (size_t s = 0; s < fp32_steps.size(); ++s)
    EXPECT_NEAR(bf16_steps[s].loss, fp32_steps[s].loss, 1e-2 * std::abs(fp32_steps[s].loss)) << "step " << s + 1;
  std::printf("[ measured ] LoRA product in bf16, 4 steps: relative L2 difference of the change %.3g\n", rel);
}

}  // namespace
}  // namespace xltune
