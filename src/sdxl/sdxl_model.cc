#include "sdxl/sdxl_model.h"

#include <ATen/ATen.h>

#include <filesystem>

#include "core/atomic_file.h"
#include "core/check.h"
#include "core/config_reader.h"
#include "core/log.h"
#include "core/safetensors.h"
#include "core/state_dict.h"
#include "models/model_loading.h"
#include "models/sdxl_base_configs.h"
#include "models/sgm_keys.h"
#include "text/clip_loading.h"

namespace fs = std::filesystem;

namespace xltune {

namespace {

const char* const kComponents[] = {"unet", "vae", "text_encoder", "text_encoder_2"};
const char* const kTokenizers[] = {"tokenizer", "tokenizer_2"};

bool is_single_file(const std::string& path) { return fs::is_regular_file(path); }

void check_folder(const std::string& path) {
  std::vector<std::string> problems;
  for (const char* c : kComponents) {
    const std::string dir = path + "/" + c;
    if (!fs::is_directory(dir)) {
      problems.push_back(std::string(c) + "/ is missing");
      continue;
    }
    if (!fs::is_regular_file(dir + "/config.json")) problems.push_back(std::string(c) + "/config.json is missing");
    try {
      find_safetensors_weights(dir);
    } catch (const Error& e) {
      problems.push_back(std::string(c) + "/ has no weights (" + e.what() + ")");
    }
  }
  for (const char* t : kTokenizers) {
    const std::string dir = path + "/" + t;
    if (!fs::is_regular_file(dir + "/vocab.json") || !fs::is_regular_file(dir + "/merges.txt"))
      problems.push_back(std::string(t) + "/vocab.json or merges.txt is missing");
  }
  if (!fs::is_regular_file(path + "/scheduler/scheduler_config.json"))
    problems.push_back("scheduler/scheduler_config.json is missing");
  XLTUNE_CHECK(problems.empty(), "--model ", path, ": not a complete diffusers SDXL folder: ", name_list(problems, 3),
               " (expected model_index.json, unet/, vae/, text_encoder/, text_encoder_2/, tokenizer/, tokenizer_2/ "
               "and scheduler/, as the hub's stabilityai/stable-diffusion-xl-base-1.0 has them)");
}

std::string config_text(const std::string& config_dir, const char* relative, const char* fallback) {
  if (config_dir.empty()) return fallback;
  return read_file(config_dir + "/" + relative);
}

}  // namespace

void check_sdxl_model(const std::string& path) {
  XLTUNE_CHECK(fs::exists(path), "--model ", path, ": no such file or folder");
  if (is_single_file(path)) {
    SafetensorsSet set(path);  // validates the header
    XLTUNE_CHECK(set.contains(std::string(kSingleFileUNetPrefix) + "input_blocks.0.0.weight"), "--model ", path,
                 ": not an SDXL single-file checkpoint (no UNet under '", kSingleFileUNetPrefix, "')");
    return;
  }
  XLTUNE_CHECK(fs::is_directory(path), "--model ", path, ": expected a diffusers folder or a .safetensors file");
  check_folder(path);
}

SdxlModel read_sdxl_configs(const std::string& path, const std::string& cd) {
  check_sdxl_model(path);
  SdxlModel m;
  m.path = path;
  m.single_file = is_single_file(path);
  if (!m.single_file) {
    m.unet_config = UNetConfig::from_json_file(path + "/unet/config.json");
    m.vae_config = VaeConfig::from_json_file(path + "/vae/config.json");
    m.scheduler_source = path + "/scheduler/scheduler_config.json";
    m.scheduler_json = read_file(m.scheduler_source);
    m.scheduler = NoiseScheduleConfig::from_json_text(m.scheduler_json, m.scheduler_source);
    if (fs::is_regular_file(path + "/model_index.json")) {
      ConfigReader index(read_file(path + "/model_index.json"), path + "/model_index.json");
      m.force_zeros_for_empty_prompt = index.boolean("force_zeros_for_empty_prompt", true);
    }
    m.tokenizer_dir_1 = path + "/tokenizer";
    m.tokenizer_dir_2 = path + "/tokenizer_2";
  } else {
    m.unet_config = UNetConfig::from_json_text(config_text(cd, "unet/config.json", kSdxlBaseUNetConfig),
                                               cd.empty() ? "SDXL base UNet config" : cd + "/unet/config.json");
    m.vae_config = VaeConfig::from_json_text(config_text(cd, "vae/config.json", kSdxlBaseVaeConfig),
                                             cd.empty() ? "SDXL base VAE config" : cd + "/vae/config.json");
    const bool own_scheduler = !cd.empty() && fs::is_regular_file(cd + "/scheduler/scheduler_config.json");
    m.scheduler_json = own_scheduler ? read_file(cd + "/scheduler/scheduler_config.json") : kSdxlBaseSchedulerConfig;
    m.scheduler_source = own_scheduler ? cd + "/scheduler/scheduler_config.json" : "SDXL base scheduler config";
    m.scheduler = NoiseScheduleConfig::from_json_text(m.scheduler_json, m.scheduler_source);
    if (!cd.empty() && fs::is_regular_file(cd + "/model_index.json")) {
      ConfigReader index(read_file(cd + "/model_index.json"), cd + "/model_index.json");
      m.force_zeros_for_empty_prompt = index.boolean("force_zeros_for_empty_prompt", true);
    }
    // A config folder that is a whole diffusers folder lends its tokenizers too.
    if (!cd.empty() && fs::is_regular_file(cd + "/tokenizer/vocab.json") && fs::is_regular_file(cd + "/tokenizer_2/vocab.json")) {
      m.tokenizer_dir_1 = cd + "/tokenizer";
      m.tokenizer_dir_2 = cd + "/tokenizer_2";
    }
  }
  return m;
}

int64_t resolution_multiple(const SdxlModel& m) {
  const int64_t vae = int64_t{1} << (m.vae_config.block_out_channels.size() - 1);
  const int64_t unet = int64_t{1} << (m.unet_config.block_out_channels.size() - 1);
  return vae * unet;
}

SdxlModel load_sdxl(const std::string& path, const SdxlLoadOptions& o) {
  SdxlModel m = read_sdxl_configs(path, o.config_dir);
  ModelLoadOptions unet_load{o.unet, o.variant}, vae_load{o.vae, o.variant}, te_load{o.text_encoders, o.variant};
  if (!m.single_file) {
    log_info("loading text encoders from ", path);
    m.te1 = load_clip_text_model(path + "/text_encoder", te_load);
    m.te2 = load_clip_text_model(path + "/text_encoder_2", te_load);
    if (o.with_unet) {
      log_info("loading the UNet from ", path, "/unet");
      m.unet = load_unet(path + "/unet", unet_load);
    }
    if (o.with_vae) m.vae = load_vae(path + "/vae", vae_load);
  } else {
    log_info("loading ", path, " (single file)");
    // Text encoder configs: from the config folder when it has them, else from the shapes.
    std::optional<ClipTextConfig> c1, c2;
    const std::string& cd = o.config_dir;
    if (!cd.empty() && fs::is_regular_file(cd + "/text_encoder/config.json"))
      c1 = ClipTextConfig::from_json_file(cd + "/text_encoder/config.json");
    if (!cd.empty() && fs::is_regular_file(cd + "/text_encoder_2/config.json"))
      c2 = ClipTextConfig::from_json_file(cd + "/text_encoder_2/config.json");
    SdxlTextEncoders te = load_sdxl_text_encoders_from_single_file(path, te_load, c1, c2);
    m.te1 = te.te1;
    m.te2 = te.te2;
    if (o.with_unet) m.unet = load_unet_from_single_file(path, m.unet_config, unet_load);
    if (o.with_vae) m.vae = load_vae_from_single_file(path, m.vae_config, vae_load);
  }
  // What the UNet is conditioned on must be what the encoders produce.
  const int64_t context = m.te1->config().hidden_size + m.te2->config().hidden_size;
  XLTUNE_CHECK(m.unet_config.text_time, "--model ", path, ": the UNet has no text_time conditioning (not SDXL)");
  for (int64_t d : m.unet_config.cross_attention_dim)
    XLTUNE_CHECK(d == context, "--model ", path, ": the UNet attends to ", d, "-wide text but the two encoders give ",
                 m.te1->config().hidden_size, " + ", m.te2->config().hidden_size, " = ", context);
  XLTUNE_CHECK(m.te2->config().with_projection && m.te2->config().projection_dim == m.unet_config.text_embeds_dim(),
               "--model ", path, ": the UNet expects ", m.unet_config.text_embeds_dim(),
               "-wide pooled text embeddings; text_encoder_2 gives ",
               m.te2->config().with_projection ? m.te2->config().projection_dim : 0);
  XLTUNE_CHECK(m.vae_config.latent_channels == m.unet_config.in_channels, "--model ", path, ": the VAE makes ",
               m.vae_config.latent_channels, "-channel latents, the UNet takes ", m.unet_config.in_channels);
  return m;
}

}  // namespace xltune
