#include "data/ingest_collector.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>

#include "core/check.h"
#include "core/log.h"
#include "data/work_dir.h"

namespace xltune {

namespace {
bool has_image_extension(const std::string& ext) {
  for (const char* e : {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".heic",
                        ".heif", ".avif"})
    if (ext == e) return true;
  return false;
}

const char* extension_for(ImageFormat format) {
  switch (format) {
    case ImageFormat::kJpeg: return ".jpg";
    case ImageFormat::kPng: return ".png";
    case ImageFormat::kWebp: return ".webp";
    case ImageFormat::kBmp: return ".bmp";
    case ImageFormat::kTiff: return ".tiff";
    default: return ".bin";
  }
}

std::string hex_head(const std::string& head) {
  std::string out;
  char byte[4];
  for (size_t i = 0; i < head.size() && i < 8; ++i) {
    std::snprintf(byte, sizeof byte, "%02x", static_cast<unsigned char>(head[i]));
    out += byte;
  }
  return out;
}

// A file descriptor closed on every path out (the writer below throws on the limits).
struct OutputFile {
  int fd = -1;
  std::string path;
  bool keep = false;
  ~OutputFile() {
    if (fd >= 0) ::close(fd);
    if (!keep && !path.empty()) ::unlink(path.c_str());
  }
};
}  // namespace

IngestCollector::IngestCollector(std::string input, WorkDir& work, const IngestLimits& limits)
    : input_(std::move(input)), work_(work), limits_(limits) {}

void IngestCollector::count_entry(const std::string& shown_name) {
  ++result_.entries;
  XLTUNE_CHECK(result_.entries <= limits_.max_entries, input_, ": more than ", limits_.max_entries,
               " entries (at '", shown_name, "'); raise --max_entries if this is intended");
}

void IngestCollector::count_bytes(uint64_t n, const std::string& name) {
  result_.unpacked_bytes += n;
  XLTUNE_CHECK(result_.unpacked_bytes <= limits_.max_unpacked_bytes, input_, ": more than ",
               limits_.max_unpacked_bytes, " bytes unpacked by entry '", name,
               "' (a zip bomb, or a large data set: raise --max_unpacked_bytes)");
}

void IngestCollector::skip(const std::string& name, const std::string& why, bool warn) {
  ++result_.skipped;
  if (warn) log_warn(input_, ": skipping '", name, "': ", why);
  else log_debug(input_, ": skipping '", name, "': ", why);
}

bool IngestCollector::read_text(const std::string& name, EntryReader& reader, std::string* text) {
  char buffer[1 << 16];
  for (;;) {
    size_t n = reader.read(buffer, sizeof buffer);
    if (n == 0) return true;
    count_bytes(n, name);
    text->append(buffer, n);
    if (text->size() > limits_.max_text_bytes) {
      skip(name, str("text file larger than ", limits_.max_text_bytes, " bytes (--max_text_bytes)"), true);
      return false;
    }
  }
}

void IngestCollector::add_image(IngestedImage image) {
  auto [it, fresh] = image_index_.emplace(image.name, result_.images.size());
  if (fresh) {
    result_.images.push_back(std::move(image));
    return;
  }
  // A tar may hold one path twice; as tar does on extraction, the later one wins.
  log_warn(input_, ": '", image.name, "' appears twice; using the later one");
  ++result_.skipped;
  result_.images[it->second] = std::move(image);
}

void IngestCollector::extract_image(const std::string& name, ImageFormat format, const std::string& head,
                                    EntryReader& reader) {
  OutputFile out;
  out.path = work_.new_file_path(extension_for(format));
  // O_EXCL | O_NOFOLLOW: the work folder is ours (mkdtemp) and the name is new, so anything
  // already there is an attack or a bug; either way, refuse rather than write through it.
  out.fd = ::open(out.path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  XLTUNE_CHECK_ERRNO(out.fd, input_, ": cannot create ", out.path, " for entry '", name, "'");
  uint64_t size = 0;
  auto write_all = [&](const char* data, size_t n) {
    size += n;
    XLTUNE_CHECK(size <= limits_.max_file_bytes, input_, ": entry '", name, "' is larger than ", limits_.max_file_bytes,
                 " bytes (--max_file_bytes)");
    count_bytes(n, name);
    while (n > 0) {
      ssize_t w = ::write(out.fd, data, n);
      if (w < 0 && errno == EINTR) continue;
      XLTUNE_CHECK_ERRNO(w, input_, ": cannot write ", out.path, " (entry '", name, "')");
      data += w;
      n -= static_cast<size_t>(w);
    }
  };
  write_all(head.data(), head.size());
  char buffer[1 << 16];
  for (size_t n; (n = reader.read(buffer, sizeof buffer)) > 0;) write_all(buffer, n);
  int fd = out.fd;
  out.fd = -1;
  XLTUNE_CHECK_ERRNO(::close(fd), input_, ": cannot close ", out.path);
  out.keep = true;
  add_image({name, out.path, format, size});
}

void IngestCollector::add_file(const EntryPath& path, EntryReader& reader, const std::string* in_place, uint64_t size) {
  const std::string& name = path.name;
  if (path.skip) return skip(name, path.why_skip, false);
  const std::string ext = lower_extension(name);
  if (ext == ".csv" || ext == ".txt") {
    std::string lower_base = base_name(name);
    for (char& c : lower_base) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (ext == ".csv" && lower_base.find("caption") == std::string::npos)
      return skip(name, "a CSV file not named *caption*.csv", true);
    std::string text;
    if (!read_text(name, reader, &text)) return;
    (ext == ".csv" ? csvs_ : sidecars_)[name] = IngestedText{name, make_valid_utf8(text)};
    return;
  }

  std::string head;
  char buffer[kSniffBytes];
  while (head.size() < kSniffBytes) {
    size_t n = reader.read(buffer, kSniffBytes - head.size());
    if (n == 0) break;
    head.append(buffer, n);
  }
  ImageFormat format = sniff_image_format(head);
  if (format == ImageFormat::kUnknown) {
    if (head.empty()) return skip(name, "empty file", has_image_extension(ext));
    return skip(name, str("not a recognised image (content starts 0x", hex_head(head), ")"), has_image_extension(ext));
  }
  if (!is_decodable(format))
    return skip(name, str("a ", image_format_name(format), " image, which xltune does not decode; convert it to JPEG or PNG"),
                true);
  if (in_place == nullptr) return extract_image(name, format, head, reader);
  XLTUNE_CHECK(size <= limits_.max_file_bytes, input_, ": '", name, "' is larger than ", limits_.max_file_bytes,
               " bytes (--max_file_bytes)");
  count_bytes(size, name);
  add_image({name, *in_place, format, size});
}

IngestResult IngestCollector::finish() {
  std::sort(result_.images.begin(), result_.images.end(),
            [](const IngestedImage& a, const IngestedImage& b) { return a.name < b.name; });
  for (auto& [name, text] : csvs_) result_.caption_csvs.push_back(std::move(text));
  for (auto& [name, text] : sidecars_) result_.sidecars.push_back(std::move(text));
  return std::move(result_);
}

}  // namespace xltune
