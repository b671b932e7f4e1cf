// Coordinated checkpoints and the search for the one to resume from.
//
// Note [Checkpoints]
// OUTPUT_DIR/checkpoints/step-NNNNNNNN/ holds
//   trainer.safetensors      rank 0: every trainable tensor and the optimizer state
//                            (Trainer::checkpoint_tensors; with --use_ema the average too,
//                            "ema.<name>", Note [EMA of the trained weights]), with
//                            __metadata__["xltune_checkpoint"]
//   optimizer-rNNNNN.safetensors   with sharded optimizer state (ZeRO-1): each rank's shard
//                            (Note [Sharded optimizer state]); any number of them resumes on
//                            any number of ranks
//   lora.safetensors, embeddings.pti, ... / unet.safetensors   the tar's files at this step, so
//                            any step's weights can be taken (the EMA's with --use_ema); LoRA checkpoints also hold
//                            trainer_state.safetensors (Note [Trainer state file]), full
//                            fine-tuning ones not (it would repeat trainer.safetensors' weights)
//   manifest.json            written LAST by rank 0: format, step, world size, the meaning of
//                            the run (options that must match to resume), every file's size
//                            and CRC-32C, and how long the write took
// and OUTPUT_DIR/checkpoints/latest names the newest complete one. Writing: every rank writes
// its files (temporary name, fsync, rename), a barrier, rank 0 checksums them all, writes the
// manifest atomically, then replaces `latest` atomically, and only then removes checkpoints
// beyond --checkpoints_total_limit. So at any moment of a crash, `latest` names a complete
// checkpoint: a folder without a manifest is an unfinished write and is never used.
// Reading: `latest`'s checkpoint if its manifest holds and every file's size and checksum match;
// otherwise (with a message saying why) the newest earlier one that does.
#pragma once

#include <cstdint>
#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace xltune {

class Communicator;

constexpr const char* kCheckpointFormat = "xltune-checkpoint";
constexpr int kCheckpointFormatVersion = 2;  // 2: per-tensor AdamW step counts, ZeRO-1 shards

struct CheckpointInfo {
  std::string dir;
  int64_t step = 0;
  nlohmann::json manifest;
};

// "step-00000042"
std::string checkpoint_name(int64_t step);

// The collective write (every rank calls it, with the files it wrote into `dir` already); rank 0
// writes the manifest with `meta` (the meaning, the sampler position, ...) and the file list,
// replaces `latest`, then prunes to `keep` complete checkpoints (0: keep all). The manifest
// records "write_seconds": from `started` (when the ranks began writing) to every file durable.
void commit_checkpoint(Communicator& comm, const std::string& root, int64_t step, const nlohmann::json& meta,
                       int keep, std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now());

// Checks a checkpoint folder against its manifest; returns why it cannot be used, or "".
std::string verify_checkpoint(const std::string& dir, nlohmann::json* manifest);

// The checkpoint to resume from under `root` (OUTPUT_DIR/checkpoints), or nullopt when there
// is none; a broken `latest` falls back to the newest good one, saying so.
std::optional<CheckpointInfo> find_checkpoint(const std::string& root);
// A checkpoint folder given by the user (--resume PATH); throws Error saying what is wrong.
CheckpointInfo open_checkpoint(const std::string& dir);

}  // namespace xltune
