// The phase of `xltune train` that makes or finds the HDF5 shards it trains on (Note [The job's
// shape], step 1): rank 0 preprocesses --input_images into OUTPUT_DIR/shards while the other
// ranks wait; a resumed run reuses its own shards; --shards names an earlier `xltune preprocess`
// output. Every rank then opens them.
#pragma once

#include <c10/core/Device.h>

#include <cstdint>
#include <memory>
#include <string>

#include "data/hdf5_shards.h"
#include "job/resume_plan.h"
#include "job/train_options.h"

namespace xltune {

class Communicator;

struct TrainingShards {
  std::string dir;
  std::unique_ptr<ShardSet> set;
  std::string id;        // fingerprint of the shard index (the latent cache and the run meaning key on it)
  std::string input_id;  // content identity of --input_images ("" with --shards)
  int resolution = 0;    // the shards' (what --shards were made at)
  int64_t size() const { return static_cast<int64_t>(set->size()); }
};

// `multiple`: what the model's resolution must be a multiple of (resolution_multiple).
TrainingShards prepare_training_shards(const TrainOptions& o, const ResumePlan& resume, int64_t multiple,
                                       at::Device device, Communicator& comm);

}  // namespace xltune
