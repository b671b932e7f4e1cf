#include "job/tensorboard_log.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <utility>
#include <vector>

#include "core/check.h"
#include "core/crc32c.h"
#include "job/tensorboard_events.h"

namespace fs = std::filesystem;

namespace xltune {
namespace {

double wall_time() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string host_name() {
  char name[256] = {};
  if (::gethostname(name, sizeof name - 1) != 0 || name[0] == '\0') return "localhost";
  return name;
}

// The n of the file name: two logs of one process in one second get two files.
std::atomic<int> g_log_count{0};

std::string little_endian(uint64_t value, int bytes) {
  std::string out(static_cast<size_t>(bytes), '\0');
  for (int i = 0; i < bytes; ++i) out[static_cast<size_t>(i)] = static_cast<char>((value >> (8 * i)) & 0xff);
  return out;
}

void add_numbers(const std::string& tag, const nlohmann::json& value, std::vector<std::pair<std::string, float>>& out) {
  if (value.is_object()) {
    for (const auto& [key, item] : value.items()) add_numbers(tag + "/" + key, item, out);
  } else if (value.is_number()) {
    out.emplace_back(tag, value.get<float>());
  }
}

}  // namespace

uint32_t masked_crc32c(std::string_view bytes) {
  const uint32_t crc = crc32c(bytes.data(), bytes.size());
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

std::string tfrecord(std::string_view data) {
  const std::string length = little_endian(data.size(), 8);
  std::string record = length + little_endian(masked_crc32c(length), 4);
  record.append(data);
  record += little_endian(masked_crc32c(data), 4);
  return record;
}

TensorBoardLog::TensorBoardLog(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  XLTUNE_CHECK(!ec, "cannot make the TensorBoard log folder ", dir, ": ", ec.message());
  const auto seconds =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  path_ = str(dir, "/events.out.tfevents.", seconds, ".", host_name(), ".", ::getpid(), ".", g_log_count++);
  out_.open(path_, std::ios::binary | std::ios::trunc);
  XLTUNE_CHECK(out_.good(), "cannot write the TensorBoard event file ", path_);
  write_event(tensorboard_events::file_version(wall_time()));
}

void TensorBoardLog::write_event(const std::string& serialized_event) {
  const std::string record = tfrecord(serialized_event);
  out_.write(record.data(), static_cast<std::streamsize>(record.size()));
  out_.flush();  // a killed run keeps every event it wrote
  XLTUNE_CHECK(out_.good(), "cannot write the TensorBoard event file ", path_);
}

void TensorBoardLog::start_at(int64_t step) { write_event(tensorboard_events::session_start(wall_time(), step)); }

void TensorBoardLog::scalar(const std::string& tag, int64_t step, double value) {
  write_event(tensorboard_events::scalars(wall_time(), step, {{tag, static_cast<float>(value)}}));
}

void TensorBoardLog::scalars_of(const nlohmann::json& line) {
  XLTUNE_CHECK(line.is_object() && line.contains("step") && line["step"].is_number_integer(),
               "a metrics line without its step: ", line.dump());
  std::vector<std::pair<std::string, float>> values;
  for (const auto& [key, item] : line.items())
    if (key != "step") add_numbers(key, item, values);
  write_event(tensorboard_events::scalars(wall_time(), line["step"].get<int64_t>(), values));
}

void TensorBoardLog::image(const std::string& tag, int64_t step, const std::string& png, int64_t height,
                           int64_t width) {
  write_event(
      tensorboard_events::image(wall_time(), step, tag, png, static_cast<int>(height), static_cast<int>(width)));
}

}  // namespace xltune
