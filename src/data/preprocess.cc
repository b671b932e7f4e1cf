#include "data/preprocess.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>

#include <opencv2/core.hpp>

#include "core/check.h"
#include "core/log.h"
#include "data/aspect_buckets.h"
#include "data/contact_sheet.h"
#include "data/crop.h"
#include "data/face_mask.h"
#include "data/hdf5_shards.h"
#include "data/image_convert.h"
#include "data/lanczos_resize.h"
#include "data/work_dir.h"

namespace xltune {

namespace {
using Clock = std::chrono::steady_clock;

void make_dirs(const std::string& path) {
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  XLTUNE_CHECK(!ec, "--output_dir ", path, ": cannot create it: ", ec.message());
  XLTUNE_CHECK(std::filesystem::is_directory(path, ec), "--output_dir ", path, ": not a folder");
}

// A model's mask of an image, as a CV_8UC1 of the image's size.
cv::Mat model_mask(MaskProvider& masks, const cv::Mat& rgb, const std::string& name) {
  const Image m = masks.mask(image_view(rgb), name);
  check_image(m, 1, "image " + name + ": the mask model's result");
  XLTUNE_CHECK(m.width == rgb.cols && m.height == rgb.rows, "image ", name, ": the mask model returned ", m.width, "x",
               m.height, ", expected ", rgb.cols, "x", rgb.rows);
  return to_mat(m);
}

// A model's upscaling of a crop (a copy: a crop has a row stride).
cv::Mat model_upscale(Upscaler& upscaler, const cv::Mat& crop, const std::string& name) {
  const Image copy = to_image(crop);
  const Image up = upscaler.upscale(copy, name);
  check_image(up, 3, "image " + name + ": the upscaler's result");
  return to_mat(up);
}

// Prints every image for small sets, else about once a second.
class Progress {
 public:
  explicit Progress(uint64_t total) : total_(total) {}
  bool due(uint64_t done) {
    auto now = Clock::now();
    if (total_ <= 100 || done == total_ || now - last_ >= std::chrono::seconds(1)) {
      last_ = now;
      return true;
    }
    return false;
  }

 private:
  uint64_t total_;
  Clock::time_point last_ = Clock::now();
};
// `count` images from `first`, decoded (an image that cannot be is skipped with a warning
// naming it: nullopt), and the captioner's captions of those without a given caption, made in
// one batch (a GPU's batch; the draws are keyed by name, so the batch does not change them),
// the trigger word `token` restored.
struct DecodedChunk {
  std::vector<std::optional<DecodedImage>> images;
  std::vector<std::string> captions;  // "" where the caption comes from elsewhere
};
DecodedChunk decode_chunk(const std::vector<IngestedImage>& images, size_t first, size_t count,
                          const CaptionTable& table, Captioner* captioner, const std::string& token,
                          const DecodeLimits& limits) {
  DecodedChunk c;
  c.images.resize(count);
  c.captions.resize(count);
  std::vector<ImageView> to_caption;  // of c.images' pixels, which stay put
  std::vector<std::string> names;
  std::vector<size_t> slots;
  for (size_t i = 0; i < count; ++i) {
    const IngestedImage& image = images[first + i];
    try {
      c.images[i] = decode_image_file(image.path, image.name, limits);
    } catch (const Error& e) {
      log_warn("skipping ", e.what());
      continue;
    }
    if (captioner != nullptr && !table.find(image.name)) {
      to_caption.push_back(image_view(c.images[i]->rgb));
      names.push_back(image.name);
      slots.push_back(i);
    }
  }
  if (to_caption.empty()) return c;
  const std::vector<std::string> texts = captioner->captions(to_caption, names);
  XLTUNE_CHECK(texts.size() == to_caption.size(), "the captioner gave ", texts.size(), " captions for ",
               to_caption.size(), " images");
  for (size_t k = 0; k < texts.size(); ++k) c.captions[slots[k]] = restore_trigger(texts[k], token);
  return c;
}

}  // namespace

void validate_preprocess_options(const PreprocessOptions& o) {
  const int R = o.resolution;
  XLTUNE_CHECK(R >= 64 && R <= 4096 && R % 8 == 0,
               "--resolution: expected a multiple of 8 from 64 to 4096 (the VAE works in 8-pixel blocks), got ", R);
  check_caption_options(o.captions);
  XLTUNE_CHECK(o.clipseg_temperature > 0, "--clipseg_temperature: expected a positive number, got ",
               o.clipseg_temperature);
  XLTUNE_CHECK(o.max_shard_bytes >= uint64_t{4} * R * R, "--max_shard_bytes: ", o.max_shard_bytes,
               " cannot hold one sample at --resolution ", R);
  if (o.aspect_buckets) buckets_for(R, o.bucket_step, o.max_aspect_ratio);  // names a bad option
}

namespace {

// Where the loss masks come from: face detection, CLIPSeg for the prompts, or uniform.
struct Masking {
  std::unique_ptr<FaceMasker> face;
  MaskProvider* prompt_masks = nullptr;
  const char* kind = "uniform";

  cv::Mat mask(const cv::Mat& rgb, const std::string& name, int* faces) const {
    if (face) return face->mask(rgb, faces);
    if (prompt_masks) return model_mask(*prompt_masks, rgb, name);
    return cv::Mat(rgb.rows, rgb.cols, CV_8UC1, cv::Scalar(255));
  }
};

Masking choose_masking(const PreprocessOptions& options, const PreprocessModels& models) {
  const bool prompt = options.mask_target_prompts && !options.mask_target_prompts->empty();
  if (prompt && options.use_face_detection_instead) {
    log_warn("--use_face_detection_instead is set: --mask_target_prompts is not used (as in the reference trainer)");
  }
  if (prompt && !options.use_face_detection_instead && models.prompt_masks == nullptr) {
    log_warn("--mask_target_prompts '", *options.mask_target_prompts, "': no CLIPSeg model (give --clipseg_model DIR, or ",
             "--preprocess_models DIR with clipseg-rd64-refined/ in it): every pixel counts the same");
  }
  Masking m;
  if (options.use_face_detection_instead) m.face = std::make_unique<FaceMasker>(options.face_cascade);
  m.prompt_masks = prompt && !m.face ? models.prompt_masks : nullptr;
  m.kind = m.face ? "face detection" : m.prompt_masks ? "prompt" : "uniform";
  return m;
}

// One decoded image as the shards hold it: masked, cropped (upscaled when the crop is smaller
// than its target), resized to R x R, or with buckets to its bucket (Note [Aspect buckets]).
struct PreparedSample {
  cv::Mat image, mask;  // R x R, or the bucket's size
  CropRect box;
  int faces = 0;
  bool upscaled = false;  // the crop was smaller than the target
};

// `buckets` empty: the reference's square crop to R x R.
PreparedSample prepare_sample(const cv::Mat& rgb, const std::string& name, const PreprocessOptions& options,
                              const Masking& masking, Upscaler* upscaler, const std::vector<BucketSize>& buckets) {
  PreparedSample p;
  const cv::Mat mask = masking.mask(rgb, name, &p.faces);
  BucketSize target{options.resolution, options.resolution};
  if (buckets.empty()) {
    const CropBox square =
        options.crop_based_on_salience ? salience_crop_box(mask) : center_crop_box(rgb.cols, rgb.rows);
    p.box = CropRect{square.left, square.top, square.size, square.size};
  } else {
    target = nearest_bucket(buckets, rgb.cols, rgb.rows);
    p.box = options.crop_based_on_salience ? salience_crop_to_shape(mask, target.width, target.height)
                                           : center_crop_to_shape(rgb.cols, rgb.rows, target.width, target.height);
  }
  const cv::Rect r(p.box.left, p.box.top, p.box.width, p.box.height);
  cv::Mat crop = rgb(r), crop_mask = mask(r);
  if (p.box.width < target.width || p.box.height < target.height) {
    p.upscaled = true;
    if (upscaler != nullptr) crop = model_upscale(*upscaler, crop, name);
  }
  p.image = lanczos_resize(crop, target.width, target.height);
  p.mask = lanczos_resize(crop_mask, target.width, target.height);
  return p;
}

// What the run had to do without: a model it was not given, a face it did not find.
void warn_about_fallbacks(PreprocessReport& report, uint64_t small_crops, bool face, const PreprocessOptions& options,
                          const PreprocessModels& models) {
  if (small_crops > 0)
    log_warn(small_crops, " images have a crop smaller than ", options.resolution, " px and were upscaled with ",
             models.upscaler ? "Swin2SR x4, then Lanczos"
                             : "Lanczos (no Swin2SR model: give --upscaler_model DIR, or --preprocess_models DIR with "
                               "swin2SR-realworld-sr-x4-64-bsrgan-psnr/ in it): expect softer training images");
  if (models.captioner == nullptr && report.caption_sources[CaptionSource::kPrefix] > 0)
    log_warn(report.caption_sources[CaptionSource::kPrefix], " images have no caption.csv row or .txt file and no ",
             "BLIP model to caption them (give --blip_model DIR, or --preprocess_models DIR with ",
             "blip-image-captioning-large/ in it): their caption is --caption_prefix alone");
  if (face && report.faces < report.samples)
    log_warn("no face found in ", report.samples - report.faces, " of ", report.samples,
             " images: their masks are uniform");
}

// The ingested images, the first --max_images by name.
std::vector<IngestedImage> images_to_use(const IngestResult& in, const PreprocessOptions& options) {
  XLTUNE_CHECK(!in.images.empty(), "--input_images ", options.input_images, ": no images found (", in.entries,
               " entries, ", in.skipped, " skipped; xltune reads JPEG, PNG, WebP, BMP and TIFF)");
  std::vector<IngestedImage> images = in.images;
  if (options.max_images > 0 && images.size() > options.max_images) {
    log_info("--max_images ", options.max_images, ": using the first ", options.max_images, " of ", images.size(),
             " images (by name)");
    images.resize(options.max_images);
  }
  return images;
}

// With --aspect_buckets: the buckets (Note [Aspect buckets]), recorded in the shards' info.
std::vector<BucketSize> choose_buckets(const PreprocessOptions& options, ShardSetInfo& info) {
  if (!options.aspect_buckets) return {};
  const std::vector<BucketSize> buckets = buckets_for(options.resolution, options.bucket_step, options.max_aspect_ratio);
  info.aspect_buckets = true;
  info.bucket_step = options.bucket_step;
  info.max_aspect_ratio = options.max_aspect_ratio;
  std::string names;
  for (const auto& b : buckets) names += " " + bucket_name(b);
  log_info("aspect buckets (--bucket_step ", options.bucket_step, ", --max_aspect_ratio ", options.max_aspect_ratio,
           "):", names);
  return buckets;
}

}  // namespace

PreprocessReport preprocess(const PreprocessOptions& options, const PreprocessModels& models) {
  const auto start = Clock::now();
  const int R = options.resolution;
  validate_preprocess_options(options);
  XLTUNE_CHECK(!options.output_dir.empty(), "--output_dir: expected a folder for the shards");
  const Masking masking = choose_masking(options, models);

  make_dirs(options.output_dir);
  WorkDir work(options.output_dir, ".xltune-work-");
  if (options.keep_work_dir) work.keep();
  IngestResult in = ingest(options.input_images, work, options.ingest_limits);
  PreprocessReport report;
  report.images_found = in.images.size();
  const std::vector<IngestedImage> images = images_to_use(in, options);
  CaptionTable table(in.images, in.caption_csvs, in.sidecars);
  log_info(options.input_images, ": ", images.size(), " images, masks: ", masking.kind,
           ", crop: ", options.crop_based_on_salience ? "salience" : "centre", ", resolution ", R);

  ShardSetInfo info{R, options.captions.token_string, options.captions.special_tokens};
  const std::vector<BucketSize> buckets = choose_buckets(options, info);  // empty: square samples
  std::unique_ptr<ShardWriter> writer;  // created with the first good sample (see preprocess.h)
  ContactSheet sheet;
  Progress progress(images.size());
  uint64_t done = 0, small_crops = 0;
  // Images go in chunks of the captioner's batch (decode_chunk), then each is masked, cropped
  // and written in name order.
  const size_t chunk = models.captioner != nullptr ? std::max<size_t>(1, models.captioner->batch_size()) : 1;
  DecodedChunk decoded_chunk;
  for (size_t n = 0; n < images.size(); ++n) {
    const IngestedImage& image = images[n];
    if (n % chunk == 0)
      decoded_chunk = decode_chunk(images, n, std::min(chunk, images.size() - n), table, models.captioner,
                                   options.captions.token_string, options.decode_limits);
    ++done;
    if (!decoded_chunk.images[n % chunk]) {
      ++report.skipped_images;
      continue;
    }
    const DecodedImage& decoded = *decoded_chunk.images[n % chunk];
    const cv::Mat& rgb = decoded.rgb;
    const PreparedSample p = prepare_sample(rgb, image.name, options, masking, models.upscaler, buckets);
    const std::string bucket = buckets.empty() ? std::string() : str(p.image.cols, "x", p.image.rows);
    if (!bucket.empty()) ++report.buckets[bucket];
    if (p.faces > 0) ++report.faces;
    if (p.upscaled) ++small_crops;
    CaptionSource source;
    const std::string caption =
        final_caption(table.find(image.name), decoded_chunk.captions[n % chunk], options.captions, &source);
    ++report.caption_sources[source];

    ShardSample sample;
    sample.height = p.image.rows;
    sample.width = p.image.cols;
    sample.image = to_image(p.image).pixels;
    sample.mask = to_image(p.mask).pixels;
    sample.caption = caption;
    sample.source = image.name;
    sample.original_height = rgb.rows;
    sample.original_width = rgb.cols;
    sample.crop_top = p.box.top;
    sample.crop_left = p.box.left;
    if (!writer) writer = std::make_unique<ShardWriter>(options.output_dir, info, options.max_shard_bytes);
    writer->add(sample);
    if (options.contact_sheet)
      sheet.add(p.image, p.mask, bucket.empty() ? image.name : image.name + " [" + bucket + "]", caption);
    if (progress.due(done)) {
      log_info("[", done, "/", images.size(), "] ", image.name, ": ", rgb.cols, "x", rgb.rows,
               decoded.orientation != 1 ? " (EXIF-rotated)" : "", ", crop ", p.box.width, "x", p.box.height, " at (",
               p.box.top, ", ", p.box.left, ")", bucket.empty() ? std::string() : " to bucket " + bucket,
               masking.face ? str(", ", p.faces, p.faces == 1 ? " face" : " faces") : "",
               ", caption [", caption_source_name(source), "] \"", caption, "\"");
    }
  }
  XLTUNE_CHECK(writer != nullptr, "--input_images ", options.input_images, ": none of the ", images.size(),
               " images could be used (see the warnings above)");
  report.samples = writer->samples();
  if (!buckets.empty()) {
    std::string counts;
    for (const auto& [name, n] : report.buckets) counts += str(counts.empty() ? "" : ", ", name, ": ", n);
    log_info("samples per bucket: ", counts);
  }
  warn_about_fallbacks(report, small_crops, masking.face != nullptr, options, models);
  if (options.contact_sheet) {
    report.contact_sheet_path = options.output_dir + "/contact_sheet.png";
    sheet.write(report.contact_sheet_path);
  }
  report.index_path = writer->finish();  // last: the set is complete from here on
  report.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return report;
}

}  // namespace xltune
