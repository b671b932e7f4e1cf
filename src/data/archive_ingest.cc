// Note [Hostile archives]
// An uploaded archive is untrusted. libarchive's archive_write_disk can be told to refuse
// absolute paths, ".." and symlinks (ARCHIVE_EXTRACT_SECURE_*), but xltune does not use it at
// all: it reads each entry's bytes itself and writes images to new numbered files in its own
// mkdtemp folder (O_CREAT | O_EXCL | O_NOFOLLOW). No name from the archive ever reaches the
// file system, so no entry can write outside the work folder or through a link. Names are
// still checked (entry_path.h): an archive that tries to climb out is refused outright, since
// nothing good comes from it. Sizes declared in headers are not trusted either: bytes are
// counted as they are decompressed, and reading stops at the limit.
#include <archive.h>
#include <archive_entry.h>
#include <locale.h>

#include <memory>

#include "core/check.h"
#include "core/log.h"
#include "data/ingest_collector.h"

namespace xltune {

namespace {
struct ArchiveFree {
  void operator()(archive* a) const { archive_read_free(a); }
};

const char* archive_message(archive* a) {
  const char* m = archive_error_string(a);
  return m != nullptr ? m : "no details from libarchive";
}

class ArchiveEntryReader : public EntryReader {
 public:
  ArchiveEntryReader(archive* a, const std::string& input, const std::string& name) : a_(a), input_(input), name_(name) {}
  size_t read(char* buffer, size_t size) override {
    for (int retry = 0;; ++retry) {
      la_ssize_t n = archive_read_data(a_, buffer, size);
      if (n >= 0) return static_cast<size_t>(n);
      if (n == ARCHIVE_RETRY && retry < 3) continue;
      XLTUNE_FAIL(input_, ": entry '", name_, "' cannot be read: ", archive_message(a_),
                  " (the archive is truncated or corrupt)");
    }
  }

 private:
  archive* a_;
  const std::string& input_;
  const std::string& name_;
};

constexpr const char* kNotAnArchive =
    "not a zip or tar archive (.zip, .tar, .tar.gz/.tgz, .tar.bz2, .tar.xz, .tar.zst), or a truncated or corrupt one";

// Note [Entry names whatever the locale]
// libarchive converts entry names from the archive's charset into the *current locale's*, and
// in the C locale of a batch job or a container any non-ASCII name fails to convert ("the
// entry has no readable name"). Reading happens under a thread-local C.UTF-8 locale instead
// (uselocale; the process locale is untouched): names flagged UTF-8 (zip's general-purpose
// bit 11, pax headers) come out as UTF-8, and names without a charset come out as their raw
// bytes. Raw bytes that are not UTF-8 are, in a zip, code page 437 (the zip format's default,
// as Python's zipfile and Windows read them), and elsewhere replaced where invalid.
class Utf8LocaleScope {
 public:
  Utf8LocaleScope() {
    locale_ = ::newlocale(LC_CTYPE_MASK, "C.UTF-8", static_cast<locale_t>(nullptr));
    if (locale_ != static_cast<locale_t>(nullptr)) previous_ = ::uselocale(locale_);
  }
  ~Utf8LocaleScope() {
    if (locale_ == static_cast<locale_t>(nullptr)) return;
    ::uselocale(previous_);
    ::freelocale(locale_);
  }
  Utf8LocaleScope(const Utf8LocaleScope&) = delete;
  Utf8LocaleScope& operator=(const Utf8LocaleScope&) = delete;

 private:
  locale_t locale_ = static_cast<locale_t>(nullptr);
  locale_t previous_ = static_cast<locale_t>(nullptr);
};

// The entry's name as UTF-8 (Note [Entry names whatever the locale]), or empty if it has none.
std::string entry_name(archive* a, archive_entry* entry) {
  const char* utf8 = archive_entry_pathname_utf8(entry);
  if (utf8 != nullptr && is_valid_utf8(utf8)) return utf8;
  const char* raw = archive_entry_pathname(entry);
  if (raw == nullptr) raw = utf8;
  if (raw == nullptr) return "";
  if (is_valid_utf8(raw)) return raw;
  const bool zip = archive_format(a) == ARCHIVE_FORMAT_ZIP || (archive_format(a) & ARCHIVE_FORMAT_BASE_MASK) ==
                                                                   ARCHIVE_FORMAT_ZIP;
  return zip ? cp437_to_utf8(raw) : make_valid_utf8(raw);
}

void enable(archive* a, int status, const char* what) {
  // ARCHIVE_WARN: supported through an external program (e.g. no libzstd built in).
  XLTUNE_CHECK(status == ARCHIVE_OK || status == ARCHIVE_WARN, "libarchive: cannot enable ", what, ": ",
               archive_message(a));
}
}  // namespace

void ingest_archive(const std::string& archive_path, IngestCollector& c) {
  const std::string& input = c.input();
  Utf8LocaleScope utf8_names;
  std::unique_ptr<archive, ArchiveFree> owner(archive_read_new());
  archive* a = owner.get();
  XLTUNE_CHECK(a != nullptr, "libarchive: out of memory");
  // Only the formats and filters we promise; not *_all, which includes formats nobody uploads
  // (ISO, RAR, CAB, ...) and filters that run external programs.
  enable(a, archive_read_support_format_zip(a), "zip");
  enable(a, archive_read_support_format_tar(a), "tar");
  enable(a, archive_read_support_filter_gzip(a), "gzip");
  enable(a, archive_read_support_filter_bzip2(a), "bzip2");
  enable(a, archive_read_support_filter_xz(a), "xz");
  enable(a, archive_read_support_filter_zstd(a), "zstd");
  // Opening reads the first block and picks the format, so a file of another kind, or one cut
  // short inside its compressed header, fails here.
  XLTUNE_CHECK(archive_read_open_filename(a, archive_path.c_str(), 1 << 16) == ARCHIVE_OK, input, ": ", kNotAnArchive,
               ": ", archive_message(a));

  std::string last = "";
  for (;;) {
    archive_entry* entry = nullptr;
    int status = archive_read_next_header(a, &entry);
    if (status == ARCHIVE_EOF) break;
    if (status == ARCHIVE_WARN) {
      // A name that could not be converted is handled below (entry_name); other warnings are
      // worth showing.
      if (std::string(archive_message(a)).find("Pathname cannot be converted") == std::string::npos)
        log_warn(input, ": ", archive_message(a));
    } else if (status != ARCHIVE_OK) {
      XLTUNE_CHECK(c.entries() > 0, input, ": ", kNotAnArchive, ": ", archive_message(a));
      XLTUNE_FAIL(input, ": cannot read the entry after '", last, "': ", archive_message(a),
                  " (the archive is truncated or corrupt)");
    }
    const std::string raw = entry_name(a, entry);
    XLTUNE_CHECK(!raw.empty(), input, ": the entry after '", last, "' has no name");
    c.count_entry(raw);
    EntryPath path = normalize_entry_path(raw, input);
    last = path.name;

    if (archive_entry_is_encrypted(entry))
      XLTUNE_FAIL(input, ": entry '", path.name, "' is encrypted (a password-protected archive); xltune cannot read "
                  "encrypted archives: create the archive again without a password");
    if (archive_entry_hardlink(entry) != nullptr) {
      c.skip(path.name, str("a hard link (to '", make_valid_utf8(archive_entry_hardlink(entry)),
                            "'); links are never followed or created"), true);
      continue;
    }
    switch (archive_entry_filetype(entry)) {
      case AE_IFDIR: continue;
      case AE_IFREG: break;
      case AE_IFLNK: {
        const char* target = archive_entry_symlink(entry);
        c.skip(path.name, str("a symbolic link (to '", make_valid_utf8(target ? target : ""),
                              "'); links are never followed or created"), true);
        continue;
      }
      default: c.skip(path.name, "not a regular file (a device, FIFO or socket)", true); continue;
    }
    ArchiveEntryReader reader(a, input, path.name);
    c.add_file(path, reader, nullptr, 0);
  }
  XLTUNE_CHECK(archive_read_close(a) == ARCHIVE_OK, input, ": ", archive_message(a));
}

}  // namespace xltune
