// The device side of Note [The step as a CUDA graph] (train/trainer.h): a side stream that the
// captured steps' work runs on, and the graphs themselves, one per batch shape. The trainer
// decides what is captured and when, and names each graph by an id of its own; this class only
// knows CUDA. A CPU build has it too (so the trainer has no #ifdef), and make() there fails with
// the reason.
//
// The graphs share one memory pool: a shape's graph needs no memory of its own beside the others',
// so a run with many aspect buckets holds about one step's memory, not one per shape. That is
// safe because the graphs never run at once (one stream) and no graph's memory holds a value
// that a graph of another step shape reads: each step's outputs are copied out on the stream
// before another shape's graphs replay (the trainer's StepRead, x0's clone), and everything else
// a step keeps (weights, optimizer state, the static inputs) lives outside the pool. Within one
// step shape's graphs (a micro-batch's, then the next's, then the update's) values do pass in
// the pool (the gradients the first backward allocates): those graphs replay back to back, in
// the order they were captured, and the host kept each such value alive until the last of them
// was captured, so no later capture of the run placed anything of its own there.
#pragma once

#include <c10/core/Device.h>

#include <cstdint>
#include <functional>
#include <memory>

namespace xltune {

class StepCapture {
 public:
  virtual ~StepCapture() = default;
  // For `device` (a CUDA device); throws Error on a build without CUDA.
  static std::unique_ptr<StepCapture> make(c10::Device device);

  // `body` run now on the side stream, ordered after the current stream's earlier work and
  // before its later work (the warm-up steps: capture needs the libraries' lazy set-up done on
  // that stream first).
  virtual void run_eager(const std::function<void()>& body) = 0;
  // `body` captured as graph `id` (not captured yet) on the side stream (nothing runs), then the
  // graph replayed once; the tensors `body` allocates live in the shared pool, at the same
  // addresses in every replay.
  virtual void capture_and_replay(int64_t id, const std::function<void()>& body) = 0;
  // Graph `id`'s work again, on the current stream, reading the same addresses.
  virtual void replay(int64_t id) = 0;
  virtual bool captured(int64_t id) const = 0;
  // Graph `id` released (nothing when there is none); its memory stays in the pool for the others.
  virtual void drop(int64_t id) = 0;
};

}  // namespace xltune
