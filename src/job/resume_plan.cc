#include "job/resume_plan.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <random>
#include <vector>

#include "core/atomic_file.h"
#include "core/check.h"
#include "core/log.h"
#include "core/safetensors.h"
#include "dist/communicator.h"
#include "job/run_identity.h"
#include "train/zero_optimizer.h"

namespace fs = std::filesystem;

namespace xltune {
namespace {

using Clock = std::chrono::steady_clock;

// Rank 0's value of `v`, on every rank.
int64_t from_rank0(Communicator& comm, int64_t v) {
  if (comm.size() == 1) return v;
  at::Tensor t = at::tensor({v}, at::kLong);
  comm.broadcast(t, 0);
  return t.item<int64_t>();
}

}  // namespace

ResumePlan plan_resume(const TrainOptions& o, Communicator& comm) {
  ResumePlan plan;
  const bool rank0 = comm.rank() == 0;
  const std::string ckpt_root = o.output_dir + "/checkpoints";
  int64_t found_step = -1;
  std::string found_dir;
  if (rank0 && o.resume != "none") {
    const auto checking = Clock::now();
    std::optional<CheckpointInfo> c =
        o.resume == "auto" ? find_checkpoint(ckpt_root) : std::optional<CheckpointInfo>(open_checkpoint(o.resume));
    if (c) {
      found_step = c->step, found_dir = c->dir;
      plan.checked_seconds = std::chrono::duration<double>(Clock::now() - checking).count();
    }
  }
  found_step = from_rank0(comm, found_step);
  std::optional<uint64_t> seed = o.seed;
  if (found_step >= 0) {
    if (!rank0) found_dir = o.resume == "auto" || o.resume.empty() ? ckpt_root + "/" + checkpoint_name(found_step) : o.resume;
    nlohmann::json m = nlohmann::json::parse(read_file(found_dir + "/manifest.json"));
    XLTUNE_CHECK(m.contains("meaning"), found_dir, ": the manifest has no run meaning");
    const uint64_t theirs = m["meaning"]["seed"].get<uint64_t>();
    XLTUNE_CHECK(!seed || *seed == theirs, "--seed ", *seed, ": the checkpoint in ", found_dir, " was made with seed ",
                 theirs);
    seed = theirs;
    plan.checkpoint = CheckpointInfo{found_dir, found_step, std::move(m)};
  }
  plan.seed_was_random = !seed.has_value();
  if (seed) {
    plan.seed = *seed;
  } else {  // rank 0's, for every rank
    const uint64_t drawn = std::random_device{}();
    plan.seed = static_cast<uint64_t>(from_rank0(comm, static_cast<int64_t>(drawn & 0x7FFFFFFFFFFFFFFFULL)));
    if (rank0) log_info("seed ", plan.seed, " (random; pass --seed ", plan.seed, " to repeat this run)");
  }
  return plan;
}

void check_resume_matches(const ResumePlan& plan, const nlohmann::json& ours, bool from_shards, int64_t total_steps) {
  const CheckpointInfo& c = *plan.checkpoint;
  XLTUNE_CHECK(c.step <= total_steps, "--max_train_steps ", total_steps, ": the checkpoint in ", c.dir, " is at step ",
               c.step, " already (it may be raised to train further, not lowered)");
  const nlohmann::json& theirs = plan.meaning();
  const bool theirs_from_shards = theirs.value("input_images", std::string()).empty();
  if (from_shards != theirs_from_shards)
    XLTUNE_FAIL("--input_images/--shards: the checkpoint in ", c.dir, " was trained from ",
                theirs_from_shards ? "--shards" : "--input_images");
  check_meaning(theirs, ours, c.dir);
}

std::string resume_determinism_warning(const ResumePlan& plan, bool deterministic, int world) {
  if (!plan.resuming()) return "";
  const CheckpointInfo& c = *plan.checkpoint;
  if (!c.manifest.value("deterministic", false)) return "";  // written before the field, or not deterministic
  const int theirs = c.manifest.value("world_size", world);
  if (!deterministic)
    return str("the checkpoint in ", c.dir, " was written by a --deterministic true run; this one (--deterministic ",
               "false) continues it with non-deterministic kernels, so its steps will not be bit-identical to the ",
               "uninterrupted run's");
  if (theirs != world)
    return str("the checkpoint in ", c.dir, " was written on ", theirs, " ranks, this run has ", world,
               ": --deterministic promises bit-identical resumes on as many ranks; on another number the sums ",
               "of the gradients run in another order");
  return "";
}

std::map<std::string, at::Tensor> load_resume_tensors(const std::string& dir) {
  std::map<std::string, at::Tensor> tensors;
  for (auto& [name, t] : load_safetensors(dir + "/trainer.safetensors", /*copy=*/false)) tensors[name] = t;
  std::vector<std::string> shard_files;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().rfind("optimizer-r", 0) == 0) shard_files.push_back(e.path().string());
  if (shard_files.empty()) return tensors;
  std::sort(shard_files.begin(), shard_files.end());
  std::vector<std::pair<std::map<std::string, at::Tensor>, std::string>> shards;
  for (const auto& f : shard_files) {
    SafetensorsFile file(f);
    std::map<std::string, at::Tensor> t;
    for (auto& [name, v] : load_safetensors(f, /*copy=*/false)) t[name] = v;
    shards.emplace_back(std::move(t), file.metadata().at("zero_layout"));
  }
  int64_t zero_steps = 0;
  for (auto& [name, v] : ZeroOptimizer::full_moments_from_shards(shards, &zero_steps)) {
    tensors[name] = v;
    tensors[name.substr(0, name.rfind('.')) + ".adamw_step"] = at::full({}, zero_steps, at::kLong);
  }
  return tensors;
}

int64_t resume_training(const ResumePlan& plan, Trainer& trainer, DistributedSampler& sampler, int64_t batch_size,
                        int64_t total_steps, bool log) {
  if (!plan.resuming()) return 1;
  const auto loading = Clock::now();
  trainer.restore(load_resume_tensors(plan.checkpoint->dir), plan.step());
  for (int64_t k = 0; k < plan.step(); ++k) sampler.next_batch(static_cast<size_t>(batch_size));
  if (log) {
    char took[96];
    std::snprintf(took, sizeof took, " (checked in %.2f s, read in %.2f s)", plan.checked_seconds,
                  std::chrono::duration<double>(Clock::now() - loading).count());
    log_info("resumed from ", plan.checkpoint->dir, ": step ", plan.step(), " of ", total_steps, " done", took);
  }
  return plan.step() + 1;
}

}  // namespace xltune
