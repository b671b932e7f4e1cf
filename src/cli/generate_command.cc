// xltune generate: images from an SDXL model and what training made (job/generate_job.h), with
// the options of the reference's predict.py under its names and defaults.
#include <boost/program_options.hpp>
#include <iostream>

#include "cli/command.h"
#include "cli/launch_world.h"
#include "cli/option_table.h"
#include "core/check.h"
#include "core/log.h"
#include "diffusion/scheduler.h"
#include "job/generate_job.h"

namespace po = boost::program_options;

namespace xltune::cli {

namespace {

const char* const kDescription =
    "Makes images with an SDXL model, optionally with what `xltune train` (or Replicate's\n"
    "trainer) made: --lora trained_model.tar brings its LoRA (or full fine-tuned UNet), the\n"
    "<s0><s1> token embeddings and the trigger word (TOK in the prompt becomes <s0><s1>);\n"
    "kohya and diffusers LoRA files load too. Text to image; with --image, image to image;\n"
    "with --image and --mask (white = repaint), inpainting. Writes OUT/out-N.png, each with\n"
    "its recipe in AUTOMATIC1111's \"parameters\" text, and OUT/grid.png when there are\n"
    "several. The same seed gives the same images (and diffusers' on the CPU). Under mpirun\n"
    "the outputs are shared out over the ranks.";

std::string scheduler_list() {
  std::string all;
  for (const auto& n : scheduler_names()) all += (all.empty() ? "" : ", ") + n;
  return all;
}

}  // namespace

int generate_command(const std::vector<std::string>& args) {
  GenerateOptions o;
  const std::string schedulers = "sampler: " + scheduler_list() + " (the reference's names)";
  OptionTable inputs("Inputs (the reference predict.py's names and defaults)");
  inputs.description().add_options()("help,h", "show this help");
  inputs.add("prompt", &o.prompt, "what to draw; TOK becomes the trained tokens")
      .add("negative_prompt", &o.negative_prompt, "what not to draw (absent: zero conditioning, as diffusers)")
      .add("width", &o.width, "image width (a multiple of 8; img2img takes the image's)")
      .add("height", &o.height, "image height")
      .add("num_outputs", &o.num_outputs, "images to make")
      .add("num_inference_steps", &o.num_inference_steps, "denoising steps")
      .add("guidance_scale", &o.guidance_scale, "classifier-free guidance (1: none)")
      .add("scheduler", &o.scheduler, schedulers.c_str())
      .add("seed", &o.seed, "random seed (-1: a random one, printed)")
      .add("image", &o.image, "img2img or inpainting: the input image")
      .add("mask", &o.mask, "inpainting: the mask (white = repaint)")
      .add("prompt_strength", &o.prompt_strength, "img2img and inpainting: 1.0 repaints everything")
      .add("lora", &o.lora, "trained_model.tar, an xltune output folder, or a LoRA .safetensors")
      .add("lora_scale", &o.lora_scale, "LoRA strength, 0 to 1");
  OptionTable own("xltune's options");
  own.add("model", &o.model, "SDXL model: a diffusers folder or a single-file .safetensors (required)")
      .add("model_config", &o.model_config, "single-file --model: a folder with its configs (default: SDXL base's)")
      .add("out", &o.out, "folder for the PNGs")
      .add("device", &o.device, "auto, cpu, cuda or cuda:N")
      .add("save_latents", &o.save_latents, "also write OUT/latents.safetensors (the final latents)")
      .add("threads", &o.threads, "CPU threads (0: libtorch's default)")
      .add_choice("attention", &o.attention, attention_kernel_choices(),
                  "the attention kernel: auto (libtorch picks per shape: flash or memory-efficient on a GPU, flash on the CPU; "
           "each shape's choice is logged once), or flash, efficient, cudnn or math to force that one (a shape it "
           "cannot run is an error naming it)");
  po::options_description all;
  all.add(inputs.description()).add(own.description());
  po::variables_map vm;
  if (!parse_options(args, all, {}, vm)) {
    std::cout << usage("generate", "--model MODEL --prompt TEXT [--lora trained_model.tar] [options]", kDescription, all);
    return 0;
  }
  o.has_negative_prompt = !vm["negative_prompt"].defaulted();
  XLTUNE_USAGE_CHECK(!o.model.empty(), "--model: expected an SDXL model (a diffusers folder or a .safetensors file)");
  XLTUNE_USAGE_CHECK(o.width > 0 && o.height > 0, "--width and --height: expected positive sizes");
  XLTUNE_USAGE_CHECK(o.width % 8 == 0 && o.height % 8 == 0, "--width ", o.width, " and --height ", o.height,
                     ": expected multiples of 8");
  XLTUNE_USAGE_CHECK(o.num_outputs >= 1 && o.num_outputs <= 64, "--num_outputs: expected 1 to 64, got ", o.num_outputs);
  XLTUNE_USAGE_CHECK(o.num_inference_steps >= 1 && o.num_inference_steps <= 500,
                     "--num_inference_steps: expected 1 to 500, got ", o.num_inference_steps);
  XLTUNE_USAGE_CHECK(o.guidance_scale >= 1 && o.guidance_scale <= 50, "--guidance_scale: expected 1 to 50, got ",
                     o.guidance_scale);
  XLTUNE_USAGE_CHECK(o.prompt_strength >= 0 && o.prompt_strength <= 1, "--prompt_strength ", o.prompt_strength,
                     ": expected a value from 0 to 1");
  XLTUNE_USAGE_CHECK(o.lora_scale >= 0 && o.lora_scale <= 1, "--lora_scale ", o.lora_scale, ": expected 0 to 1");
  bool known = false;
  for (const auto& n : scheduler_names()) known = known || n == o.scheduler;
  XLTUNE_USAGE_CHECK(known, "--scheduler '", o.scheduler, "': expected one of ", scheduler_list());

  std::unique_ptr<Communicator> comm = launcher_communicator();
  GenerateReport r;
  try {
    r = run_generate_job(o, *comm);
  } catch (const std::exception& e) {
    if (comm->size() == 1) throw;
    abort_job(*comm, "generate", e);
  }
  if (comm->rank() != 0) return 0;
  std::cout << "made " << o.num_outputs << " image" << (o.num_outputs > 1 ? "s" : "") << " (seed " << r.seed << ") in "
            << std::fixed;
  std::cout.precision(1);
  std::cout << r.seconds << " s (" << r.generating_seconds << " s generating):";
  for (const auto& f : r.files) std::cout << " " << f;
  std::cout << "\n";
  return 0;
}

}  // namespace xltune::cli
