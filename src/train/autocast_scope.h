// bf16 autocast on CUDA for the duration of a scope (full fine-tuning of a fp32 UNet: the frozen
// weights of LoRA are bf16 already). Used by the eager step and by the body a CUDA graph captures.
#pragma once

#include <ATen/autocast_mode.h>

namespace xltune {

class AutocastScope {
 public:
  // `cache`: whether a weight's bf16 cast is kept for its later uses within the scope. Off in a
  // step that a CUDA graph captures, as PyTorch asks of autocast under capture: the cache would
  // hold casts made while capturing beyond the scope's own work (the casts run inside the graph
  // either way, from the fp32 weights the update rewrote in place).
  explicit AutocastScope(bool on, bool cache = true) : on_(on) {
    if (!on_) return;
    was_enabled_ = at::autocast::is_autocast_enabled(at::kCUDA);
    was_dtype_ = at::autocast::get_autocast_dtype(at::kCUDA);
    was_caching_ = at::autocast::is_autocast_cache_enabled();
    at::autocast::set_autocast_enabled(at::kCUDA, true);
    at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
    at::autocast::set_autocast_cache_enabled(cache);
    at::autocast::clear_cache();  // casts of weights from before the last update must not be reused
  }
  ~AutocastScope() {
    if (!on_) return;
    at::autocast::set_autocast_enabled(at::kCUDA, was_enabled_);
    at::autocast::set_autocast_dtype(at::kCUDA, was_dtype_);
    at::autocast::set_autocast_cache_enabled(was_caching_);
    at::autocast::clear_cache();
  }
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  bool on_;
  bool was_enabled_ = false;
  bool was_caching_ = true;
  at::ScalarType was_dtype_ = at::kHalf;
};

}  // namespace xltune
