// The configs of SDXL base 1.0's UNet, VAE and scheduler, embedded: a single-file checkpoint
// (sd_xl_base_1.0.safetensors) has weights only. The text encoders' configs are inferred
// from the tensor shapes (text/clip_loading.h).
#pragma once

namespace xltune {

extern const char* const kSdxlBaseUNetConfig;       // unet/config.json
extern const char* const kSdxlBaseVaeConfig;        // vae/config.json (scaling_factor 0.13025)
extern const char* const kSdxlBaseSchedulerConfig;  // scheduler/scheduler_config.json

}  // namespace xltune
