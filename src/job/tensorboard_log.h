// --report_to tensorboard: OUTPUT_DIR/logs/events.out.tfevents.* as TensorBoard (and TensorFlow's
// summary writers) write them, so that `tensorboard --logdir OUTPUT_DIR/logs` shows the run
// while it trains. Rank 0 alone writes (Note [TensorBoard events], docs/design-notes.md).
//
// An event file is a TFRecord file: each record is an 8-byte little-endian length, the masked
// CRC-32C of those 8 bytes, the data (a serialized tensorboard.Event), the masked CRC-32C of the
// data. The first event holds the file version ("brain.Event:2"); scalars are Summary values
// with a simple_value, images Summary.Image values holding PNG bytes. Every event is flushed
// as it is written, so a killed run keeps all it logged. A resumed run starts a new file with a
// session log START at its first step, as TensorFlow's training sessions do: TensorBoard reads
// the folder's files in name order and, at that event, drops the earlier events of that step and
// later, which the resumed run logs again.
#pragma once

#include <cstdint>
#include <fstream>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace xltune {

// OUTPUT_DIR's folder of event files.
inline constexpr const char* kTensorBoardDir = "logs";

// TFRecord's checksum: CRC-32C rotated right by 15 bits plus 0xa282ead8.
uint32_t masked_crc32c(std::string_view bytes);
// One TFRecord record holding `data`: length, its masked CRC, data, its masked CRC.
std::string tfrecord(std::string_view data);

class TensorBoardLog {
 public:
  // A new event file in `dir` (made if missing), named as TensorFlow names them:
  // events.out.tfevents.<unix seconds>.<host name>.<pid>.<n>; its first event the file version.
  explicit TensorBoardLog(const std::string& dir);

  // The run (re)starts at `step`: TensorBoard forgets what earlier files logged from `step` on.
  void start_at(int64_t step);
  // Any scalar, under any tag ("loss", "lr/unet", ...); TensorBoard keeps it as float32.
  void scalar(const std::string& tag, int64_t step, double value);
  // Every number of a metrics.jsonl line at its "step", each under its key; an object's numbers
  // under "key/name" (the learning rates: lr/lora, lr/text_embeddings). Booleans, strings and
  // lists are left out.
  void scalars_of(const nlohmann::json& metrics_line);
  // A PNG image (its bytes as they are) of height x width RGB pixels.
  void image(const std::string& tag, int64_t step, const std::string& png, int64_t height, int64_t width);

  const std::string& path() const { return path_; }

 private:
  void write_event(const std::string& serialized_event);

  std::string path_;
  std::ofstream out_;
};

}  // namespace xltune
