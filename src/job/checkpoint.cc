#include "job/checkpoint.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "core/atomic_file.h"
#include "core/check.h"
#include "core/crc32c.h"
#include "core/log.h"
#include "dist/communicator.h"

namespace fs = std::filesystem;

namespace xltune {

std::string checkpoint_name(int64_t step) {
  char name[32];
  std::snprintf(name, sizeof name, "step-%08lld", static_cast<long long>(step));
  return name;
}

namespace {

// Complete checkpoints (with a manifest) under root, newest first.
std::vector<std::pair<int64_t, std::string>> candidates(const std::string& root) {
  std::vector<std::pair<int64_t, std::string>> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(root, ec)) {
    const std::string name = e.path().filename().string();
    if (!e.is_directory() || name.rfind("step-", 0) != 0) continue;
    char* end = nullptr;
    const long long step = std::strtoll(name.c_str() + 5, &end, 10);
    if (*end != '\0') continue;
    if (fs::is_regular_file(e.path() / "manifest.json")) out.emplace_back(step, e.path().string());
  }
  std::sort(out.rbegin(), out.rend());
  return out;
}

}  // namespace

void commit_checkpoint(Communicator& comm, const std::string& root, int64_t step, const nlohmann::json& meta, int keep,
                       std::chrono::steady_clock::time_point started) {
  comm.barrier();  // every rank's files are written and renamed
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  if (comm.rank() == 0) {
    const std::string dir = root + "/" + checkpoint_name(step);
    nlohmann::json files = nlohmann::json::array();
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir))
      if (e.is_regular_file() && e.path().filename() != "manifest.json" &&
          e.path().filename().string().find(".tmp.") == std::string::npos)
        names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    for (const auto& name : names) {
      uint64_t size = 0;
      const uint32_t crc = crc32c_of_file(dir + "/" + name, &size);
      files.push_back({{"name", name}, {"bytes", size}, {"crc32c", crc}});
    }
    nlohmann::json manifest = meta;
    manifest["format"] = kCheckpointFormat;
    manifest["format_version"] = kCheckpointFormatVersion;
    manifest["step"] = step;
    manifest["world_size"] = comm.size();
    manifest["files"] = files;
    manifest["write_seconds"] = seconds;
    write_file_atomic(dir + "/manifest.json", manifest.dump(2) + "\n");  // the checkpoint exists from here
    write_file_atomic(root + "/latest", checkpoint_name(step) + "\n");
    uint64_t bytes = 0;
    for (const auto& f : files) bytes += f["bytes"].get<uint64_t>();
    char size[64];
    std::snprintf(size, sizeof size, "%.1f MB, written in %.2f s", static_cast<double>(bytes) / 1e6, seconds);
    log_info("checkpoint: ", dir, " (", files.size(), " files, ", size, ")");
    if (keep > 0) {
      const auto all = candidates(root);
      for (size_t i = static_cast<size_t>(keep); i < all.size(); ++i) {
        // The manifest first: a half-removed folder is then an unfinished one, never used.
        fs::remove(all[i].second + "/manifest.json");
        fsync_directory(all[i].second);
        fs::remove_all(all[i].second);
      }
    }
  }
  comm.barrier();
}

std::string verify_checkpoint(const std::string& dir, nlohmann::json* manifest) {
  const std::string path = dir + "/manifest.json";
  if (!fs::is_regular_file(path)) return "no manifest.json (an unfinished write)";
  nlohmann::json m;
  try {
    m = nlohmann::json::parse(read_file(path));
  } catch (const std::exception& e) {
    return std::string("manifest.json is not JSON: ") + e.what();
  }
  if (!m.is_object() || m.value("format", "") != kCheckpointFormat) return "manifest.json is not an xltune checkpoint's";
  if (m.value("format_version", 0) != kCheckpointFormatVersion) return "another checkpoint format version";
  if (!m.contains("files") || !m["files"].is_array()) return "manifest.json lists no files";
  for (const auto& f : m["files"]) {
    const std::string file = dir + "/" + f.value("name", "");
    std::error_code ec;
    const auto size = fs::file_size(file, ec);
    if (ec) return f.value("name", "?") + " is missing";
    if (size != f.value("bytes", uint64_t{0}))
      return str(f.value("name", "?"), " has ", size, " bytes, the manifest says ", f.value("bytes", uint64_t{0}),
                 " (truncated?)");
    if (crc32c_of_file(file) != f.value("crc32c", uint32_t{0}))
      return f.value("name", "?") + " does not match its checksum (corrupted)";
  }
  if (manifest != nullptr) *manifest = std::move(m);
  return "";
}

CheckpointInfo open_checkpoint(const std::string& dir) {
  nlohmann::json m;
  const std::string why = verify_checkpoint(dir, &m);
  XLTUNE_CHECK(why.empty(), "--resume ", dir, ": cannot resume from it: ", why);
  return CheckpointInfo{dir, m.value("step", int64_t{0}), m};
}

std::optional<CheckpointInfo> find_checkpoint(const std::string& root) {
  std::string wanted;
  if (fs::is_regular_file(root + "/latest")) {
    wanted = read_file(root + "/latest");
    wanted.erase(std::remove_if(wanted.begin(), wanted.end(), [](char c) { return c == '\n' || c == '\r'; }),
                 wanted.end());
  }
  const auto all = candidates(root);
  std::vector<std::pair<int64_t, std::string>> order;
  if (!wanted.empty()) {
    for (const auto& c : all)
      if (fs::path(c.second).filename() == wanted) order.push_back(c);
    if (order.empty()) log_warn("checkpoints/latest names ", wanted, ", which has no manifest: looking for another");
  }
  for (const auto& c : all)
    if (fs::path(c.second).filename() != wanted) order.push_back(c);
  for (const auto& [step, dir] : order) {
    nlohmann::json m;
    const std::string why = verify_checkpoint(dir, &m);
    if (why.empty()) return CheckpointInfo{dir, m.value("step", step), m};
    log_warn("checkpoint ", dir, " cannot be used: ", why, "; trying the one before it");
  }
  return std::nullopt;
}

}  // namespace xltune
