// The device side of Note [The step as a CUDA graph] (train/trainer.h): a side stream that the
// captured step's work runs on, and the graph itself. The trainer decides what is captured and
// when; this class only knows CUDA. A CPU build has it too (so the trainer has no #ifdef), and
// make() there fails with the reason.
#pragma once

#include <c10/core/Device.h>

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
  // `body` captured on the side stream (nothing runs), then the graph replayed once; the
  // tensors `body` allocates live in the graph's private memory pool, at the same addresses in
  // every replay.
  virtual void capture_and_replay(const std::function<void()>& body) = 0;
  // The captured work again, on the current stream, reading the same addresses.
  virtual void replay() = 0;
  virtual bool captured() const = 0;
};

}  // namespace xltune
