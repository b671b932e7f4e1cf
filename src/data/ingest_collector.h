// The part of ingest shared by archives and folders: limits, classification of each file,
// extraction of images into the work folder. Internal to ingest (ingest.h is the interface).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>

#include "data/entry_path.h"
#include "data/ingest.h"

namespace xltune {

// The bytes of one entry, read in order. read() returns 0 at the end and throws Error (naming
// the entry) when the data cannot be read.
class EntryReader {
 public:
  virtual ~EntryReader() = default;
  virtual size_t read(char* buffer, size_t size) = 0;
};

class IngestCollector {
 public:
  IngestCollector(std::string input, WorkDir& work, const IngestLimits& limits);

  const std::string& input() const { return input_; }
  uint64_t entries() const { return result_.entries; }
  // Counts one entry of any kind (folders and links too) against max_entries.
  void count_entry(const std::string& shown_name);
  // A regular file. `in_place` (folders) is where the file already is: images are then
  // recorded, not copied; `size` is its size from stat. Archives pass nullptr.
  void add_file(const EntryPath& path, EntryReader& reader, const std::string* in_place, uint64_t size);
  void skip(const std::string& name, const std::string& why, bool warn);
  IngestResult finish();

 private:
  void count_bytes(uint64_t n, const std::string& name);
  // Reads a text file whole; false (and a warning) when it is above max_text_bytes.
  bool read_text(const std::string& name, EntryReader& reader, std::string* text);
  void extract_image(const std::string& name, ImageFormat format, const std::string& head, EntryReader& reader);
  void add_image(IngestedImage image);

  std::string input_;
  WorkDir& work_;
  IngestLimits limits_;
  IngestResult result_;
  std::map<std::string, size_t> image_index_;  // name -> position in result_.images
  std::map<std::string, IngestedText> csvs_, sidecars_;
};

// The two sources. Both throw Error naming the input and the entry.
void ingest_archive(const std::string& archive_path, IngestCollector& collector);
void ingest_folder(const std::string& folder, IngestCollector& collector);

}  // namespace xltune
