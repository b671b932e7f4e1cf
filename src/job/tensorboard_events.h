// Serialized tensorboard.Event messages (TensorBoard's event.proto and summary.proto), made by the
// C++ classes that protoc generates from TensorBoard's own definitions (Note [TensorBoard
// events]). This file and its .cc are compiled apart from everything else, in the library
// xltune_tensorboard_events, without libtorch's include folders: libtorch ships headers of an
// older protobuf (torch/include/google/protobuf) that would hide Debian's. So the interface is
// the standard library's alone; job/tensorboard_log.h writes these bytes into event files.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace xltune::tensorboard_events {

// The first event of a file: its version, "brain.Event:2".
std::string file_version(double wall_time);
// A session log START at `step`: TensorBoard drops every event of the folder's earlier files at
// `step` or later (what a resumed run logs again).
std::string session_start(double wall_time, int64_t step);
// Scalars (tag, value) at `step`, as Summary values with a simple_value.
std::string scalars(double wall_time, int64_t step, const std::vector<std::pair<std::string, float>>& values);
// An image at `step`: a Summary.Image of RGB pixels (colorspace 3) holding the PNG bytes `png`.
std::string image(double wall_time, int64_t step, const std::string& tag, const std::string& png, int height,
                  int width);

}  // namespace xltune::tensorboard_events
