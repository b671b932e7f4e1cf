#include "data/batch_reader.h"

#include "core/check.h"

namespace xltune {

BatchReader::BatchReader(const ShardSet& set, DistributedSampler sampler, size_t batch_size, size_t depth)
    : BatchReader([&set](uint64_t i) { return set.read(i); }, std::move(sampler), batch_size, depth) {}

BatchReader::BatchReader(Loader loader, DistributedSampler sampler, size_t batch_size, size_t depth)
    : loader_(std::move(loader)), sampler_(std::move(sampler)), batch_size_(batch_size), depth_(depth) {
  XLTUNE_CHECK(batch_size_ > 0 && depth_ > 0, "batch reader: batch size and depth must be positive");
  thread_ = std::thread([this] { run(); });
}

BatchReader::~BatchReader() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  changed_.notify_all();
  thread_.join();
}

void BatchReader::run() {
  try {
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(mutex_);
        changed_.wait(lock, [this] { return stop_ || queue_.size() < depth_; });
        if (stop_) return;
      }
      // Read outside the lock: next() can take finished batches meanwhile.
      Batch batch;
      batch.indices = sampler_.next_batch(batch_size_);
      batch.position_after = sampler_.position();
      for (uint64_t i : batch.indices) {
        batch.samples.push_back(loader_(i));
        std::lock_guard<std::mutex> lock(mutex_);
        if (stop_) return;
      }
      {
        std::lock_guard<std::mutex> lock(mutex_);
        queue_.push_back(std::move(batch));
      }
      changed_.notify_all();
    }
  } catch (...) {
    std::lock_guard<std::mutex> lock(mutex_);
    error_ = std::current_exception();
  }
  changed_.notify_all();
}

Batch BatchReader::next() {
  std::unique_lock<std::mutex> lock(mutex_);
  changed_.wait(lock, [this] { return !queue_.empty() || error_ != nullptr; });
  if (queue_.empty()) std::rethrow_exception(error_);
  Batch batch = std::move(queue_.front());
  queue_.pop_front();
  lock.unlock();
  changed_.notify_all();
  return batch;
}

}  // namespace xltune
