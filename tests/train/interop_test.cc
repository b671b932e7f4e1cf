// The C++ half of the interop check (tests/reference/train_interop.py is the other): a trained
// run's trainer state applied by xltune to its own UNet and encoders, on fixed inputs, saved for
// diffusers to reproduce from the exported files (lora_kohya.safetensors, lora.safetensors,
// embeddings_sdxl.safetensors, embeddings.pti).
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "core/safetensors.h"
#include "sdxl/sdxl_model.h"
#include "text/clip_tokenizer.h"
#include "train/export.h"
#include "test_paths.h"

namespace xltune {
namespace {

TEST(TrainInterop, OurOutputsForDiffusersToMatch) {
  const std::string data = std::string(xltune::test_paths::testdata_dir()) + "/train_cli";
  const std::string model = data + "/init/model", run = data + "/parity/lora";
  SdxlLoadOptions o;
  o.unet = o.text_encoders = o.vae = at::TensorOptions().dtype(at::kFloat);
  o.with_vae = false;
  SdxlModel m = load_sdxl(model, o);
  ClipTokenizer t1 = ClipTokenizer::from_folder(model + "/tokenizer"), t2 = ClipTokenizer::from_folder(model + "/tokenizer_2");
  t1.add_tokens({"<s0>", "<s1>"});
  t2.add_tokens({"<s0>", "<s1>"});
  SafetensorsFile state_file(run + "/trainer_state.safetensors");
  TrainedWeights w = trained_weights_from_state(load_safetensors(run + "/trainer_state.safetensors", true),
                                                state_file.metadata().at("xltune_state"));
  at::NoGradGuard no_grad;
  m.te1->add_new_tokens(2, at::make_generator<at::CPUGeneratorImpl>(0)).copy_(w.rows_1);
  m.te2->add_new_tokens(2, at::make_generator<at::CPUGeneratorImpl>(0)).copy_(w.rows_2);
  const std::string prompt = "a photo of <s0><s1> on the moon";
  const at::Tensor ids_1 = at::tensor(t1.encode(prompt), at::kLong).view({1, 77});
  const at::Tensor ids_2 = at::tensor(t2.encode(prompt), at::kLong).view({1, 77});
  ClipTextOutput a = m.te1->forward(ids_1), b = m.te2->forward(ids_2);
  at::Tensor context = at::cat({a.penultimate, b.penultimate}, -1).repeat({2, 1, 1});
  at::Tensor pooled = b.text_embeds.repeat({2, 1});
  at::manual_seed(123);
  at::Tensor sample = at::randn({2, 4, 8, 8}), timesteps = at::tensor({100, 700}, at::kLong);
  at::Tensor time_ids = at::tensor({64.f, 64.f, 0.f, 0.f, 64.f, 64.f, 96.f, 128.f, 0.f, 16.f, 64.f, 64.f}).view({2, 6});
  at::Tensor base = m.unet->forward(sample, timesteps, context, pooled, time_ids);
  std::vector<LoraTensors> lora = w.lora;
  for (auto& l : lora) l.scale = w.lora_alpha / static_cast<double>(w.lora_rank);
  attach_lora_weights(*m.unet, lora, at::TensorOptions().dtype(at::kFloat));
  at::Tensor tuned = m.unet->forward(sample, timesteps, context, pooled, time_ids);
  ASSERT_GT((tuned - base).abs().max().item<double>(), 1e-4) << "the trained LoRA must change the UNet";
  std::filesystem::create_directories(data + "/interop");
  save_safetensors(data + "/interop/ours.safetensors",
                   {{"input_ids_1", ids_1}, {"input_ids_2", ids_2}, {"context", context[0].unsqueeze(0)},
                    {"pooled", pooled[0].unsqueeze(0)}, {"sample", sample}, {"timesteps", timesteps},
                    {"time_ids", time_ids}, {"unet_base", base}, {"unet_lora", tuned}},
                   {{"prompt", prompt}});
}

}  // namespace
}  // namespace xltune
