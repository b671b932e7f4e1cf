// The preprocessing pipeline of `xltune preprocess`, on rank 0, before any collective exists:
//
//   ingest (archive or folder) -> for each image, in name order:
//     decode (upright 8-bit RGB) -> mask -> square crop (with --aspect_buckets: a crop of the
//     nearest bucket's shape, Note [Aspect buckets]) -> upscale (if a model is plugged in and
//     the crop is smaller than the resolution) -> Lanczos to resolution (or the bucket) -> caption
//   -> HDF5 shards (index.json last) + contact_sheet.png
//
// The models plug in through core/image_models.h (MaskProvider, Captioner, Upscaler); this file
// converts its cv::Mat images to core's Image for them (data/image_convert.h).
//
// Captions: a caption.csv row or .txt sidecar, else BLIP's caption (the trigger word restored,
// data/captions.h) after --caption_prefix when a BLIP model is plugged in, else the prefix
// alone. Upscaling: crops smaller than the resolution go through Swin2SR x4 when one is plugged
// in, then Lanczos to the resolution.
//
// Masks: --use_face_detection_instead gives face masks (face_mask.h); otherwise a uniform
// mask (all 255: every pixel counts fully in the loss, and the salience crop centres on the
// image), as the reference trainer without --mask_target_prompts (CLIPSeg at temperature 999
// is uniform to within 1/255). --mask_target_prompts takes CLIPSeg's masks (prep/clipseg.h,
// loaded by job/preprocess_models.h); with no CLIPSeg model the masks are uniform and a
// warning says so once, naming the options that give one.
//
// An image that cannot be used is skipped with a warning naming it; no usable image at all is
// an error. The shard writer starts only once the first image is ready, so an input that fails
// early leaves an existing shard set in --output_dir untouched.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "core/image_models.h"
#include "data/captions.h"
#include "data/image_decode.h"
#include "data/ingest.h"

namespace xltune {

struct PreprocessOptions {
  std::string input_images;
  std::string output_dir;
  int resolution = 512;
  CaptionOptions captions;
  std::optional<std::string> mask_target_prompts;
  double clipseg_temperature = 1.0;  // CLIPSeg's softmax temperature (with mask_target_prompts)
  // Where the preprocessing models are (job/preprocess_models.h loads them): a CLIPSeg folder,
  // or a folder of the hub folders under their names (clipseg-rd64-refined, ...).
  std::string clipseg_model;
  std::string blip_model;      // BLIP captioner (Salesforce/blip-image-captioning-large)
  std::string upscaler_model;  // Swin2SR x4 (caidas/swin2SR-realworld-sr-x4-64-bsrgan-psnr)
  std::string preprocess_models;
  // BLIP's sampled captions draw from generators keyed by this seed and the image's name
  // (prep/caption_decoding.h): `xltune train` passes its --seed.
  uint64_t caption_seed = 0;
  bool crop_based_on_salience = true;
  // Note [Aspect buckets]: each image cropped to the bucket nearest its aspect ratio, not square.
  bool aspect_buckets = false;
  int bucket_step = 64;
  double max_aspect_ratio = 2.0;
  bool use_face_detection_instead = false;
  uint64_t max_images = 0;  // the first N images by name; 0: all
  IngestLimits ingest_limits;
  DecodeLimits decode_limits;
  uint64_t max_shard_bytes = uint64_t{1} << 30;
  bool contact_sheet = true;
  std::string face_cascade;  // empty: find_face_cascade()
  bool keep_work_dir = false;
};

struct PreprocessModels {
  MaskProvider* prompt_masks = nullptr;  // CLIPSeg, for --mask_target_prompts
  Captioner* captioner = nullptr;        // BLIP
  Upscaler* upscaler = nullptr;          // Swin2SR
};

struct PreprocessReport {
  uint64_t images_found = 0;
  uint64_t samples = 0;
  uint64_t skipped_images = 0;
  uint64_t faces = 0;  // images in which a face was found (face masks only)
  std::map<std::string, uint64_t> buckets;  // with --aspect_buckets: samples per bucket ("1216x832")
  std::map<CaptionSource, uint64_t> caption_sources;
  std::string index_path;
  std::string contact_sheet_path;  // empty when not written
  double seconds = 0;
};

// Checks each value once (resolution a multiple of 8 from 64 to 4096, the token string one
// word, a positive CLIPSeg temperature, a shard that holds a sample, buckets that exist); throws Error naming the
// option. preprocess() calls it; so does `xltune train` before anything else runs.
void validate_preprocess_options(const PreprocessOptions& options);

PreprocessReport preprocess(const PreprocessOptions& options, const PreprocessModels& models = {});

}  // namespace xltune
