#include "job/generate_job.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>

#include "core/atomic_file.h"
#include "core/check.h"
#include "core/log.h"
#include "core/placement.h"
#include "core/safetensors.h"
#include "data/captions.h"
#include "data/image_decode.h"
#include "data/lanczos_resize.h"
#include "data/png_text.h"
#include "diffusion/scheduler.h"
#include "generate/render_on_ranks.h"
#include "generate/sdxl_pipeline.h"
#include "job/tokenizers.h"
#include "job/trained_model_tar.h"
#include "models/lora.h"
#include "sdxl/sdxl_model.h"
#include "train/lora_loading.h"

namespace fs = std::filesystem;

namespace xltune {

std::string a1111_sampler_name(const std::string& s) {
  if (s == "K_EULER") return "Euler";
  if (s == "K_EULER_ANCESTRAL") return "Euler a";
  if (s == "DDIM") return "DDIM";
  if (s == "DPMSolverMultistep") return "DPM++ 2M";
  if (s == "KarrasDPM") return "DPM++ 2M Karras";
  if (s == "HeunDiscrete") return "Heun";
  if (s == "PNDM") return "PLMS";
  return s;
}

namespace {

// New token rows of both encoders: embeddings.pti (text_encoders_0/1) or the A1111/ComfyUI
// layout (clip_l/clip_g). Adds <s0>..<s{n-1}> to both tokenizers.
void load_embeddings(const std::string& path, SdxlModel& m, ClipTokenizer& t1, ClipTokenizer& t2) {
  SafetensorsFile e(path);
  auto find = [&](const char* a, const char* b) {
    const char* name = e.find(a) != nullptr ? a : b;
    XLTUNE_CHECK(e.find(name) != nullptr, path, ": no '", a, "' (or '", b, "') tensor: not a token embeddings file");
    return e.tensor(name).to(at::kFloat);
  };
  const at::Tensor r1 = find("text_encoders_0", "clip_l"), r2 = find("text_encoders_1", "clip_g");
  XLTUNE_CHECK(r1.dim() == 2 && r2.dim() == 2 && r1.size(0) == r2.size(0), path, ": expected [n, ", m.te1->config().hidden_size,
               "] and [n, ", m.te2->config().hidden_size, "] rows, got ", r1.sizes(), " and ", r2.sizes());
  XLTUNE_CHECK(r1.size(1) == m.te1->config().hidden_size && r2.size(1) == m.te2->config().hidden_size, path,
               ": rows of width ", r1.size(1), " and ", r2.size(1), " do not fit this model's encoders (",
               m.te1->config().hidden_size, " and ", m.te2->config().hidden_size, ")");
  std::vector<std::string> tokens;
  for (int64_t i = 0; i < r1.size(0); ++i) tokens.push_back("<s" + std::to_string(i) + ">");
  t1.add_tokens(tokens);
  t2.add_tokens(tokens);
  auto g = at::make_generator<at::CPUGeneratorImpl>(0);
  torch::NoGradGuard no_grad;
  m.te1->add_new_tokens(r1.size(0), g).copy_(r1);
  m.te2->add_new_tokens(r2.size(0), g).copy_(r2);
}

// Full fine-tuning's weights over the base UNet's (by name; a name the UNet lacks is an error).
void load_unet_weights(const std::string& path, UNetImpl& unet) {
  const NamedTensors w = load_safetensors(path);
  auto params = unet.named_parameters(true);
  std::vector<std::string> unknown;
  torch::NoGradGuard no_grad;
  for (const auto& [name, t] : w) {
    at::Tensor* p = params.find(name);
    if (p == nullptr) {
      unknown.push_back(name);
      continue;
    }
    XLTUNE_CHECK(p->sizes() == t.sizes(), path, ": ", name, " is ", t.sizes(), ", the model's is ", p->sizes());
    p->copy_(t);
  }
  XLTUNE_CHECK(unknown.empty(), path, ": ", unknown.size(), " tensors this UNet does not have, e.g. ", unknown.front());
}

// An RGB image file as [1, 3, H, W] in [-1, 1] (VaeImageProcessor: x / 255 * 2 - 1), or a mask
// as [1, 1, H, W] in {0, 1} (grey, binarised at 0.5), resized to width x height when asked.
// An image file as diffusers' VaeImageProcessor reads it: [1, 3, H, W] in [-1, 1]
// (x / 255 * 2 - 1); a mask as its mask processor does: PIL's "L" grey, then [1, 1, H, W]
// binarised at 0.5. Resized to width x height when asked, with Pillow's Lanczos as diffusers
// resizes (data/lanczos_resize.h).
at::Tensor read_image(const std::string& path, const char* option, bool mask, int64_t width, int64_t height) {
  XLTUNE_CHECK(fs::is_regular_file(path), option, " ", path, ": no such file");
  cv::Mat pixels = decode_image_file(path, path).rgb;
  if (mask) {
    // PIL's RGB -> L: (19595 R + 38470 G + 7471 B + 0x8000) >> 16.
    cv::Mat grey(pixels.rows, pixels.cols, CV_8UC1);
    for (int y = 0; y < pixels.rows; ++y) {
      const uint8_t* in = pixels.ptr<uint8_t>(y);
      uint8_t* out = grey.ptr<uint8_t>(y);
      for (int x = 0; x < pixels.cols; ++x)
        out[x] = static_cast<uint8_t>((in[3 * x] * 19595 + in[3 * x + 1] * 38470 + in[3 * x + 2] * 7471 + 0x8000) >> 16);
    }
    pixels = grey;
  }
  if (width > 0 && (pixels.cols != width || pixels.rows != height))
    pixels = lanczos_resize(pixels, static_cast<int>(width), static_cast<int>(height));
  const int64_t c = pixels.channels();
  at::Tensor t = torch::from_blob(pixels.data, {pixels.rows, pixels.cols, c}, at::kByte).clone().to(at::kFloat) / 255.0;
  if (mask) return (t >= 0.5).to(at::kFloat).view({1, 1, pixels.rows, pixels.cols});
  return (t.permute({2, 0, 1}).unsqueeze(0) * 2 - 1).contiguous();
}

std::string a1111_parameters(const GenerateOptions& o, const std::string& prompt, uint64_t seed, int64_t w, int64_t h) {
  std::string text = prompt;
  if (!o.lora.empty()) {
    char scale[32];
    std::snprintf(scale, sizeof scale, "%g", o.lora_scale);
    text += " <lora:" + fs::path(o.lora).stem().string() + ":" + scale + ">";
  }
  text += "\n";
  if (o.has_negative_prompt) text += "Negative prompt: " + o.negative_prompt + "\n";
  char cfg[32];
  std::snprintf(cfg, sizeof cfg, "%g", o.guidance_scale);
  text += "Steps: " + std::to_string(o.num_inference_steps) + ", Sampler: " + a1111_sampler_name(o.scheduler) +
          ", CFG scale: " + cfg + ", Seed: " + std::to_string(seed) + ", Size: " + std::to_string(w) + "x" +
          std::to_string(h) + ", Model: " + fs::path(o.model).stem().string();
  if (!o.image.empty()) {
    char strength[32];
    std::snprintf(strength, sizeof strength, "%g", o.prompt_strength);
    text += std::string(", Denoising strength: ") + strength;
  }
  return text + ", Version: xltune";
}

}  // namespace

namespace {

// --seed, or rank 0's random one for every rank (a given seed is everyone's already).
uint64_t generation_seed(const GenerateOptions& o, Communicator& comm) {
  if (o.seed >= 0) return static_cast<uint64_t>(o.seed);
  uint64_t seed = std::random_device{}() % 65536;
  if (comm.size() > 1) {
    at::Tensor s = at::tensor({static_cast<double>(seed)}, at::kDouble);
    comm.broadcast(s, 0);
    seed = static_cast<uint64_t>(s.item<double>());
  }
  if (comm.rank() == 0) log_info("seed ", seed, " (none given; pass --seed ", seed, " to repeat this)");
  return seed;
}

// --image (img2img: its own size, rounded down to the VAE's factor; inpainting: --width x
// --height) and --mask into the request.
void read_request_images(const GenerateOptions& o, const SdxlModel& configs, GenerationRequest& r) {
  if (o.image.empty()) return;
  const int64_t f = int64_t{1} << (configs.vae_config.block_out_channels.size() - 1);
  const int64_t multiple = resolution_multiple(configs);
  if (!o.mask.empty()) {
    r.image = read_image(o.image, "--image", false, o.width, o.height);
    r.mask = read_image(o.mask, "--mask", true, o.width, o.height);
    return;
  }
  r.image = read_image(o.image, "--image", false, 0, 0);
  const int64_t h = r.image.size(2) / f * f, w = r.image.size(3) / f * f;
  XLTUNE_CHECK(h > 0 && w > 0, "--image ", o.image, ": smaller than ", f, " pixels");
  XLTUNE_CHECK(h % multiple == 0 && w % multiple == 0, "--image ", o.image, ": img2img keeps the image's size (",
               r.image.size(3), "x", r.image.size(2), ", ", w, "x", h, " at the VAE's factor ", f,
               "), and this model needs multiples of ", multiple, ": resize or crop the image");
  if (h != r.image.size(2) || w != r.image.size(3)) r.image = read_image(o.image, "--image", false, w, h);
}

// Everything but the prompt, checked before the model loads: a bad --scheduler, size or image
// fails in seconds.
GenerationRequest request_from(const GenerateOptions& o, const SdxlModel& configs, uint64_t seed) {
  // xltune's UNet takes latents that its levels halve evenly (diffusers pads odd sizes inside).
  const int64_t multiple = resolution_multiple(configs);
  XLTUNE_CHECK(o.width % multiple == 0 && o.height % multiple == 0, "--width ", o.width, " and --height ", o.height,
               ": this model needs multiples of ", multiple, " (its VAE and UNet downscale by ", multiple, " in all)");
  make_scheduler(o.scheduler, SchedulerConfig::from_json_text(configs.scheduler_json, configs.scheduler_source),
                 o.num_inference_steps);
  GenerationRequest r;
  r.width = o.width, r.height = o.height, r.num_outputs = o.num_outputs, r.num_inference_steps = o.num_inference_steps;
  r.guidance_scale = o.guidance_scale, r.scheduler = o.scheduler, r.seed = seed;
  r.negative_prompt = o.negative_prompt, r.has_negative_prompt = o.has_negative_prompt;
  r.strength = o.prompt_strength;
  read_request_images(o, configs, r);
  return r;
}

// The placement's (Note [One placement]), the VAE in fp32 when its config says force_upcast
// (SDXL's VAE overflows in fp16).
SdxlLoadOptions generate_load_options(const GenerateOptions& o, const SdxlModel& configs, const Placement& placement) {
  SdxlLoadOptions lo;
  lo.unet = placement.unet_options();
  lo.text_encoders = placement.frozen_options();
  lo.vae = configs.vae_config.force_upcast ? placement.vae_options().dtype(at::kFloat) : placement.vae_options();
  lo.config_dir = o.model_config;
  return lo;
}

// --lora's trained files into the model and tokenizers; returns the prompt with the trained
// tokens' triggers replaced (the reference's literal, case-sensitive replace of each key).
std::string apply_trained_files(const GenerateOptions& o, SdxlModel& model, ClipTokenizer& t1, ClipTokenizer& t2,
                                at::Device device, bool log) {
  std::string prompt = o.prompt;
  if (o.lora.empty()) return prompt;
  ScopedTempFolder temp("xltune-generate");
  const TrainedFiles tf = trained_files(o.lora, temp.path());
  if (!tf.unet.empty()) load_unet_weights(tf.unet, *model.unet);
  if (!tf.lora.empty()) {
    LoraFile lf = read_lora_file(tf.lora, *model.unet);
    attach_lora_weights(*model.unet, lf.weights, at::TensorOptions().dtype(at::kFloat).device(device), o.lora_scale);
    if (log) log_info("LoRA ", tf.lora.substr(tf.lora.rfind('/') + 1), " (", lf.format, " layout, ",
                      lf.weights.size(), " projections) at scale ", o.lora_scale);
  }
  if (!tf.embeddings.empty()) load_embeddings(tf.embeddings, model, t1, t2);
  if (!tf.special_params.empty()) {
    const auto map = nlohmann::json::parse(read_file(tf.special_params));
    for (auto it = map.begin(); it != map.end(); ++it)
      prompt = replace_literally(prompt, it.key(), it.value().get<std::string>());
  }
  return prompt;
}

// Rank 0: out-N.png (with A1111's parameters text), grid.png for several, latents.safetensors.
std::vector<std::string> write_generated(const GenerateOptions& o, const RenderedImages& images, uint64_t seed) {
  std::vector<std::string> files;
  fs::create_directories(o.out);
  const int64_t H = images.pixels.size(1), W = images.pixels.size(2);
  const std::string params = a1111_parameters(o, o.prompt, seed, W, H);
  auto write = [&](const std::string& path, const at::Tensor& px) {
    cv::Mat rgb(static_cast<int>(px.size(0)), static_cast<int>(px.size(1)), CV_8UC3, px.data_ptr());
    write_png_with_text(path, rgb, {{"parameters", params}});
    files.push_back(path);
  };
  for (int64_t i = 0; i < o.num_outputs; ++i)
    write(o.out + "/out-" + std::to_string(i) + ".png", images.pixels[i].contiguous());
  if (o.num_outputs > 1) write(o.out + "/grid.png", image_grid(images.pixels, o.num_outputs));
  if (o.save_latents) {
    save_safetensors(o.out + "/latents.safetensors", {{"latents", images.latents.contiguous()}});
    files.push_back(o.out + "/latents.safetensors");
  }
  return files;
}

}  // namespace

GenerateReport run_generate_job(const GenerateOptions& o, Communicator& comm) {
  const auto started = std::chrono::steady_clock::now();
  const bool rank0 = comm.rank() == 0;
  XLTUNE_CHECK(o.lora_scale >= 0 && o.lora_scale <= 1, "--lora_scale ", o.lora_scale, ": expected a value from 0 to 1");
  XLTUNE_CHECK(o.mask.empty() || !o.image.empty(), "--mask needs --image (inpainting repaints the image's masked part)");
  GenerateReport report;
  report.seed = generation_seed(o, comm);
  Placement placement = decide_placement(o.device, comm.local_rank(), PlacementUse::kGenerate, o.threads);
  placement.attention = o.attention;
  apply_placement(placement);
  const at::Device device = placement.device;
  const SdxlModel configs = read_sdxl_configs(o.model, o.model_config);
  GenerationRequest r = request_from(o, configs, report.seed);
  SdxlModel model = load_sdxl(o.model, generate_load_options(o, configs, placement));
  model.unet->eval();
  ClipTokenizer t1 = load_tokenizer(model.tokenizer_dir_1, "<|endoftext|>");
  ClipTokenizer t2 = load_tokenizer(model.tokenizer_dir_2, "!");
  r.prompt = apply_trained_files(o, model, t1, t2, device, rank0);
  SdxlPipeline pipe(model, std::move(t1), std::move(t2), model.force_zeros_for_empty_prompt);
  const auto generating = std::chrono::steady_clock::now();
  // The gather goes through MPI on CPU tensors (`xltune generate` has no NCCL communicator).
  const RenderedImages images = render_on_ranks(pipe, r, comm, at::Device(at::kCPU), o.save_latents,
                                                [&](int64_t done, int64_t total) {
    if (rank0 && (done == total || done % 10 == 0)) log_info("step ", done, " of ", total);
  });
  report.generating_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - generating).count();
  if (rank0) report.files = write_generated(o, images, report.seed);
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return report;
}

}  // namespace xltune
