// Ingest: the user's --input_images (a .zip, .tar, .tar.gz/.tgz, .tar.bz2, .tar.xz, .tar.zst
// or a folder) to a list of image files and caption files, on rank 0, before any collective.
//
// What is collected, at any folder depth:
//   - images, recognised by their content (magic bytes), whatever their names: JPEG, PNG,
//     WebP, BMP, TIFF. GIF and HEIC/AVIF are recognised and skipped with a warning.
//   - caption CSVs: files named *caption*.csv (caption.csv, captions.csv, my_captions.csv)
//   - .txt sidecars: "a/img.txt" is the caption of "a/img.jpg"
// What is skipped: hidden files and folders (".*"), macOS metadata (__MACOSX, ._*), other
// files (with a warning when the name looks like an image but the content is not).
//
// Safety (the archive is untrusted; see Note [Hostile archives] in archive_ingest.cc):
//   - an absolute path or a ".." part: error naming the entry, nothing extracted is kept
//   - symbolic links, hard links, devices: skipped with a warning, never created or followed
//   - encrypted (password-protected) zip entries: error
//   - limits on entries, bytes per file and unpacked bytes in all (counted while streaming, so
//     a zip bomb stops at the limit), each error naming the entry and the option to raise
//   - images are extracted into the caller's work folder under numbered names
// Sample names are the normalised paths inside the archive or folder ("a/img.jpg",
// "b/img.jpg"), so duplicate base names stay apart.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/image_header.h"

namespace xltune {

class WorkDir;

struct IngestLimits {
  uint64_t max_entries = 100000;                      // archive entries or folder files, all kinds
  uint64_t max_file_bytes = uint64_t{256} << 20;      // one image file
  uint64_t max_text_bytes = uint64_t{16} << 20;       // one caption CSV or .txt sidecar
  uint64_t max_unpacked_bytes = uint64_t{16} << 30;   // everything read out of the archive
};

struct IngestedImage {
  std::string name;  // path inside the archive or folder: the sample's name
  std::string path;  // where to read it: in the work folder (archives) or in place (folders)
  ImageFormat format = ImageFormat::kUnknown;
  uint64_t bytes = 0;
};

struct IngestedText {
  std::string name;
  std::string text;  // valid UTF-8 (invalid bytes replaced)
};

struct IngestResult {
  std::vector<IngestedImage> images;        // sorted by name
  std::vector<IngestedText> caption_csvs;   // sorted by name
  std::vector<IngestedText> sidecars;       // .txt files, sorted by name
  uint64_t entries = 0;                     // entries seen, of every kind
  uint64_t skipped = 0;                     // entries skipped (hidden, links, not images, ...)
  uint64_t unpacked_bytes = 0;
};

// Reads `input` (archive or folder). Archive images are extracted into `work`. Throws Error
// for an unreadable or hostile input; an input without images is not an error here (the
// caller reports it with the whole picture).
IngestResult ingest(const std::string& input, WorkDir& work, const IngestLimits& limits = {});

}  // namespace xltune
