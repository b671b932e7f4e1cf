#include "job/training_shards.h"

#include <filesystem>

#include "core/atomic_file.h"
#include "core/check.h"
#include "core/fnv1a.h"
#include "core/log.h"
#include "data/captions.h"
#include "data/latent_cache_file.h"
#include "data/preprocess.h"
#include "dist/communicator.h"
#include "job/preprocess_models.h"
#include "job/run_identity.h"

namespace fs = std::filesystem;

namespace xltune {
namespace {

// Rank 0 preprocesses --input_images into `dir`; every rank waits for it.
void preprocess_on_rank0(const TrainOptions& o, const std::string& dir, uint64_t seed, at::Device device,
                         Communicator& comm) {
  PreprocessOptions p = o.prep;
  p.input_images = o.input_images;
  p.output_dir = dir;
  p.caption_seed = seed;
  if (comm.rank() == 0) {
    const LoadedPreprocessModels models = load_preprocess_models(p, placement_for(device, PlacementUse::kPreprocess));
    PreprocessReport r = preprocess(p, models.view());
    log_info("preprocessed ", r.samples, " images into ", dir, " (", r.skipped_images, " skipped)");
  }
  // The one wait without --collective_timeout: it lasts as long as rank 0's preprocessing, which
  // has no bound worth guessing (Note [No hang]).
  const auto untimed = comm.untimed_collectives();
  comm.barrier();
}

std::unique_ptr<ShardSet> open_shards(const std::string& dir, Communicator& comm) {
  try {
    return std::make_unique<ShardSet>(dir);
  } catch (const Error& e) {
    if (comm.size() == 1) throw;
    XLTUNE_FAIL("rank ", comm.rank(), " cannot read the shards: ", e.what(), " (--output_dir and --shards must be on ",
                "storage that every rank's node can read)");
  }
}

// --shards: an earlier `xltune preprocess` output, which must fit the options and the model.
void check_given_shards(const TrainOptions& o, const ShardSetInfo& info, int64_t multiple) {
  XLTUNE_CHECK(!o.resolution || *o.resolution == info.resolution, "--resolution ", o.prep.resolution,
               ": the shards in ", o.shards, " were made at ", info.resolution, " (leave --resolution out)");
  XLTUNE_CHECK(info.token_string == o.prep.captions.token_string, "--token_string ", o.prep.captions.token_string,
               ": the shards in ", o.shards, " were captioned for '", info.token_string, "'");
  XLTUNE_CHECK(info.resolution % multiple == 0, "--shards ", o.shards, ": resolution ", info.resolution,
               " is not a multiple of ", multiple, ", which this model needs");
  XLTUNE_CHECK(!o.prep.aspect_buckets || info.aspect_buckets, "--aspect_buckets true: the shards in ", o.shards,
               " were made without buckets (run xltune preprocess with --aspect_buckets true)");
}

// Reused shards of a resumed run must have the buckets the options ask for (Note [Aspect buckets]).
void check_reused_buckets(const TrainOptions& o, const ShardSetInfo& info, const std::string& dir) {
  const bool same = o.prep.aspect_buckets == info.aspect_buckets &&
                    (!info.aspect_buckets ||
                     (o.prep.bucket_step == info.bucket_step && o.prep.max_aspect_ratio == info.max_aspect_ratio));
  XLTUNE_CHECK(same, "--aspect_buckets ", o.prep.aspect_buckets ? "true" : "false", " (--bucket_step ",
               o.prep.bucket_step, ", --max_aspect_ratio ", o.prep.max_aspect_ratio, "): the shards in ", dir,
               " that the checkpoint was trained on were made ",
               info.aspect_buckets
                   ? str("with buckets (step ", info.bucket_step, ", ratio ", info.max_aspect_ratio, ")")
                   : std::string("without buckets"),
               "; a resumed run must mean the same (use another --output_dir, or --resume none to start over)");
}

}  // namespace

TrainingShards prepare_training_shards(const TrainOptions& o, const ResumePlan& resume, int64_t multiple,
                                       at::Device device, Communicator& comm) {
  TrainingShards s;
  s.dir = o.shards;
  s.input_id = o.input_images.empty() ? std::string() : content_identity(o.input_images);
  if (s.dir.empty() && resume.resuming() && fs::is_regular_file(o.output_dir + "/shards/index.json")) {
    s.dir = o.output_dir + "/shards";
    XLTUNE_CHECK(resume.meaning().value("input_images", std::string()) == s.input_id, "--input_images ",
                 o.input_images, ": not the images the checkpoint in ", resume.checkpoint->dir,
                 " was trained on (it changed?)");
    if (comm.rank() == 0) log_info("resuming from ", resume.checkpoint->dir, ": reusing the shards in ", s.dir);
  }
  if (s.dir.empty()) {
    XLTUNE_CHECK(o.prep.resolution % multiple == 0, "--resolution ", o.prep.resolution,
                 ": this model needs a multiple of ", multiple, " (its VAE and UNet downscale by ", multiple, " in all)");
    XLTUNE_CHECK(!o.prep.aspect_buckets || o.prep.bucket_step % multiple == 0, "--bucket_step ", o.prep.bucket_step,
                 ": this model needs a multiple of ", multiple, " (its VAE and UNet downscale by ", multiple,
                 " in all)");
    s.dir = o.output_dir + "/shards";
    preprocess_on_rank0(o, s.dir, resume.seed, device, comm);
  }
  s.set = open_shards(s.dir, comm);
  s.id = fingerprint_of(read_file(s.dir + "/index.json"));
  const ShardSetInfo& info = s.set->info();
  s.resolution = o.prep.resolution;
  if (!o.shards.empty()) {
    check_given_shards(o, info, multiple);
    s.resolution = info.resolution;
  } else if (resume.resuming()) {
    check_reused_buckets(o, info, s.dir);
  }
  XLTUNE_CHECK(!info.aspect_buckets || info.bucket_step % multiple == 0, s.dir, ": bucket step ", info.bucket_step,
               " is not a multiple of ", multiple, ", which this model needs");
  const std::string expected_tokens = special_tokens_for(2);
  XLTUNE_CHECK(info.special_tokens == expected_tokens, s.dir, ": captions use the special tokens '",
               info.special_tokens, "', xltune trains ", expected_tokens);
  return s;
}

}  // namespace xltune
