// Batches read ahead on a background thread, so that decoding shards overlaps the training
// step. A bounded queue (depth batches) limits memory; the destructor stops the thread even
// when the queue is full; an exception on the thread (a shard read failing) is rethrown by the
// next call to next(), in order, after the batches read before it.
//
// Each batch carries the sampler position after it: a checkpoint saves the position of the
// last batch *trained on*, not the sampler's own, which runs ahead by the queue depth.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "data/hdf5_shards.h"
#include "data/sampler.h"

namespace xltune {

struct Batch {
  std::vector<uint64_t> indices;
  std::vector<ShardSample> samples;
  SamplerPosition position_after;  // restore() this to continue after this batch
};

class BatchReader {
 public:
  using Loader = std::function<ShardSample(uint64_t index)>;

  // Reads from `set`, which must outlive the reader.
  BatchReader(const ShardSet& set, DistributedSampler sampler, size_t batch_size, size_t depth = 2);
  // Any loader (tests inject failures).
  BatchReader(Loader loader, DistributedSampler sampler, size_t batch_size, size_t depth = 2);
  ~BatchReader();
  BatchReader(const BatchReader&) = delete;
  BatchReader& operator=(const BatchReader&) = delete;

  // The next batch; blocks until it is read. Rethrows the background thread's exception.
  Batch next();

 private:
  void run();

  Loader loader_;
  DistributedSampler sampler_;
  size_t batch_size_, depth_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<Batch> queue_;
  std::exception_ptr error_;
  bool stop_ = false;
  std::thread thread_;  // last: starts after everything above exists
};

}  // namespace xltune
