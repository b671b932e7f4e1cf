#include "cli/option_table.h"

namespace xltune::cli {

const char* const kResolutionHelp =
    "side of the square training images in pixels (a multiple of 8; 1024 for SDXL's native size)";

void add_preprocess_options(OptionTable& t, PreprocessOptions& o) {
  t.add("caption_prefix", &o.captions.caption_prefix,
           "caption of images without a caption.csv row or .txt file; must contain --token_string")
      .add("token_string", &o.captions.token_string,
           "the trigger word; replaced (as a whole word) by the new tokens <s0><s1> in every caption")
      .add_optional("mask_target_prompts", &o.mask_target_prompts,
                    "what matters in the images (e.g. 'photo of a dog'), for CLIPSeg masks that weight the loss")
      .add("crop_based_on_salience", &o.crop_based_on_salience,
           "true: crop each image square around its mask's centre of mass; false: centre crop")
      .add("aspect_buckets", &o.aspect_buckets,
           "true: crop each image to the aspect-ratio bucket nearest its shape (sizes of about --resolution^2 "
           "pixels), and train each step on one bucket; false: square crops, as the reference trainer")
      .add("bucket_step", &o.bucket_step, "with --aspect_buckets: bucket sides are multiples of this many pixels")
      .add("max_aspect_ratio", &o.max_aspect_ratio,
           "with --aspect_buckets: the longest side of a bucket is at most this times its shortest")
      .add("use_face_detection_instead", &o.use_face_detection_instead,
           "true: masks from face detection (OpenCV Haar cascade) instead of CLIPSeg")
      .add("clipseg_temperature", &o.clipseg_temperature,
           "CLIPSeg softmax temperature: lower is a sharper mask (0.5 to 1.0 recommended)")
      .add("max_images", &o.max_images, "use only the first N images by name (0: all)")
      .add("clipseg_model", &o.clipseg_model,
           "CLIPSeg folder for --mask_target_prompts (as the hub ships CIDAS/clipseg-rd64-refined)")
      .add("blip_model", &o.blip_model,
           "BLIP folder for captions of images without one (as the hub ships "
           "Salesforce/blip-image-captioning-large)")
      .add("upscaler_model", &o.upscaler_model,
           "Swin2SR x4 folder for crops smaller than --resolution (as the hub ships "
           "caidas/swin2SR-realworld-sr-x4-64-bsrgan-psnr)")
      .add("preprocess_models", &o.preprocess_models,
           "a folder of the preprocessing models under their hub names (clipseg-rd64-refined/, "
           "blip-image-captioning-large/, swin2SR-realworld-sr-x4-64-bsrgan-psnr/); the options above win");
}

void add_ingest_limit_options(OptionTable& t, PreprocessOptions& o) {
  t.add("max_entries", &o.ingest_limits.max_entries, "most entries an archive or folder may have")
      .add("max_unpacked_bytes", &o.ingest_limits.max_unpacked_bytes,
           "most bytes unpacked from an archive in all (stops zip bombs)")
      .add("max_file_bytes", &o.ingest_limits.max_file_bytes, "largest image file")
      .add("max_image_pixels", &o.decode_limits.max_image_pixels, "largest image (width x height), checked before decoding")
      .add("max_shard_bytes", &o.max_shard_bytes, "size of one HDF5 shard");
}

void finish_preprocess_options(PreprocessOptions& o) { o.decode_limits.max_file_bytes = o.ingest_limits.max_file_bytes; }

bool given(const boost::program_options::variables_map& vm, const char* name) {
  return vm.count(name) != 0 && !vm[name].defaulted();
}

}  // namespace xltune::cli
