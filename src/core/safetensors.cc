#include "core/safetensors.h"

#include <ATen/ATen.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <functional>
#include <nlohmann/json.hpp>
#include <set>

#include "core/atomic_file.h"
#include "core/check.h"
#include "core/dtype.h"
#include "core/strings.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors data is little-endian; so must the host be");

namespace xltune {

// A read-only file mapped privately into memory. Tensors that view it hold a shared_ptr.
class MappedFile {
 public:
  explicit MappedFile(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    XLTUNE_CHECK_ERRNO(fd, "cannot open ", path);
    struct stat st {};
    if (::fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
      ::close(fd);
      XLTUNE_FAIL(path, ": not a regular file");
    }
    size_ = static_cast<uint64_t>(st.st_size);
    if (size_ > 0) {
      // PROT_WRITE on a private mapping: tensors over it may be written (copy-on-write)
      // without ever changing the file.
      void* p = ::mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
      int err = errno;
      ::close(fd);
      XLTUNE_CHECK(p != MAP_FAILED, "cannot map ", path, ": ", std::strerror(err));
      data_ = static_cast<unsigned char*>(p);
    } else {
      ::close(fd);
    }
  }
  ~MappedFile() {
    if (data_ != nullptr) ::munmap(data_, size_);
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  unsigned char* data() const { return data_; }
  uint64_t size() const { return size_; }

 private:
  unsigned char* data_ = nullptr;
  uint64_t size_ = 0;
};

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
  mapping_ = std::make_shared<MappedFile>(path);
  uint64_t header_len = parse_safetensors_prefix(mapping_->data(), mapping_->size(), path);
  data_start_ = 8 + header_len;
  std::string_view json(reinterpret_cast<const char*>(mapping_->data()) + 8, header_len);
  header_ = parse_safetensors_header(json, mapping_->size() - data_start_, path);
  for (size_t i = 0; i < header_.tensors.size(); ++i) index_[header_.tensors[i].name] = i;
}

SafetensorsFile::~SafetensorsFile() = default;

uint64_t SafetensorsFile::file_size() const { return mapping_->size(); }

const SafetensorsEntry* SafetensorsFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &header_.tensors[it->second];
}

at::Tensor SafetensorsFile::tensor_from_entry(const SafetensorsEntry& e) const {
  auto options = at::TensorOptions().dtype(to_scalar_type(e.dtype)).device(at::kCPU);
  if (e.nbytes() == 0) return at::empty(e.shape, options);
  unsigned char* bytes = mapping_->data() + data_start_ + e.begin;
  if (reinterpret_cast<uintptr_t>(bytes) % dtype_size(e.dtype) == 0) {
    std::shared_ptr<MappedFile> keep = mapping_;
    return at::from_blob(bytes, e.shape, [keep](void*) {}, options);
  }
  // Misaligned (a writer that did not pad its header): copy into aligned memory.
  at::Tensor out = at::empty(e.shape, options);
  std::memcpy(out.data_ptr(), bytes, e.nbytes());
  return out;
}

at::Tensor SafetensorsFile::tensor(const std::string& name) const {
  const SafetensorsEntry* e = find(name);
  XLTUNE_CHECK(e != nullptr, path_, ": no tensor named '", name, "'");
  return tensor_from_entry(*e);
}

at::Tensor SafetensorsFile::tensor(const std::string& name, c10::ScalarType dtype) const {
  at::Tensor t = tensor(name);
  return t.scalar_type() == dtype ? t : t.to(dtype);
}

at::Tensor SafetensorsFile::tensor_copy(const std::string& name) const { return tensor(name).clone(); }

// -- sharded sets -------------------------------------------------------------------------------

namespace {
std::string folder_of(const std::string& path) {
  auto pos = path.rfind('/');
  return pos == std::string::npos ? "." : path.substr(0, pos);
}
}  // namespace

SafetensorsSet::SafetensorsSet(const std::string& path) : path_(path) {
  if (!ends_with(path, ".json")) {
    files_.push_back(std::make_unique<SafetensorsFile>(path));
    metadata_ = files_[0]->metadata();
    for (const auto& e : files_[0]->entries()) {
      where_[e.name] = 0;
      names_.push_back(e.name);
    }
    return;
  }
  nlohmann::json index;
  try {
    index = nlohmann::json::parse(read_file(path));
  } catch (const nlohmann::json::exception& e) {
    XLTUNE_FAIL(path, ": not a valid index JSON: ", e.what());
  }
  XLTUNE_CHECK(index.is_object() && index.contains("weight_map") && index["weight_map"].is_object(), path,
               ": expected a safetensors index with a \"weight_map\" object");
  if (index.contains("metadata") && index["metadata"].is_object()) {
    for (auto it = index["metadata"].begin(); it != index["metadata"].end(); ++it)
      metadata_[it.key()] = it->is_string() ? it->get<std::string>() : it->dump();
  }
  // Shards in the order of first mention, each opened once.
  std::map<std::string, size_t> shard_index;
  const auto& weight_map = index["weight_map"];
  for (auto it = weight_map.begin(); it != weight_map.end(); ++it) {
    XLTUNE_CHECK(it->is_string(), path, ": weight_map['", it.key(), "']: expected a file name");
    const std::string shard = it->get<std::string>();
    XLTUNE_CHECK(shard.find('/') == std::string::npos && shard != ".." && !shard.empty(), path,
                 ": weight_map['", it.key(), "'] names '", shard, "': expected a file in the index's folder");
    if (!shard_index.count(shard)) {
      shard_index[shard] = files_.size();
      files_.push_back(std::make_unique<SafetensorsFile>(folder_of(path) + "/" + shard));
    }
    const SafetensorsFile& file = *files_[shard_index[shard]];
    XLTUNE_CHECK(file.find(it.key()) != nullptr, path, ": weight_map puts '", it.key(), "' in ", shard,
                 ", which has no such tensor");
  }
  // Every tensor of every shard, once; one in two shards is ambiguous.
  for (size_t i = 0; i < files_.size(); ++i) {
    for (const auto& e : files_[i]->entries()) {
      auto [pos, inserted] = where_.emplace(e.name, i);
      XLTUNE_CHECK(inserted, path, ": tensor '", e.name, "' is in both ", files_[pos->second]->path(), " and ",
                   files_[i]->path());
      names_.push_back(e.name);
    }
  }
}

const SafetensorsFile& SafetensorsSet::file_of(const std::string& name) const {
  auto it = where_.find(name);
  XLTUNE_CHECK(it != where_.end(), path_, ": no tensor named '", name, "'");
  return *files_[it->second];
}

const SafetensorsEntry& SafetensorsSet::entry(const std::string& name) const { return *file_of(name).find(name); }
at::Tensor SafetensorsSet::tensor(const std::string& name) const { return file_of(name).tensor(name); }
at::Tensor SafetensorsSet::tensor(const std::string& name, c10::ScalarType dtype) const {
  return file_of(name).tensor(name, dtype);
}

NamedTensors load_safetensors(const std::string& path, bool copy) {
  SafetensorsSet set(path);
  NamedTensors out;
  out.reserve(set.names().size());
  for (const auto& name : set.names()) {
    at::Tensor t = set.tensor(name);
    out.emplace_back(name, copy ? t.clone() : t);
  }
  return out;
}

// -- writing ------------------------------------------------------------------------------------

namespace {
using ByteSink = std::function<void(const void*, size_t)>;

void write_safetensors(const NamedTensors& tensors, const std::map<std::string, std::string>& metadata,
                       const ByteSink& sink) {
  // Python's order: dtype descending in the reference enum's order (which groups element sizes,
  // largest first, so every tensor stays aligned), then name. Names are unique: no ties.
  std::vector<size_t> order(tensors.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::vector<StDtype> dtypes;
  for (const auto& [name, t] : tensors) dtypes.push_back(from_scalar_type(t.scalar_type()));
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return dtypes[a] != dtypes[b] ? dtypes[a] > dtypes[b] : tensors[a].first < tensors[b].first;
  });
  std::vector<SafetensorsEntry> entries;
  std::vector<at::Tensor> ready;
  uint64_t offset = 0;
  for (size_t i : order) {
    const at::Tensor& t = tensors[i].second;
    XLTUNE_CHECK(t.defined(), "tensor '", tensors[i].first, "' is undefined");
    at::Tensor c = t.to(at::kCPU).contiguous();
    SafetensorsEntry e;
    e.name = tensors[i].first;
    e.dtype = dtypes[i];
    e.shape.assign(c.sizes().begin(), c.sizes().end());
    e.begin = offset;
    e.end = offset + static_cast<uint64_t>(c.nbytes());
    offset = e.end;
    entries.push_back(std::move(e));
    ready.push_back(std::move(c));
  }
  std::string header = format_safetensors_header(entries, metadata);
  unsigned char prefix[8];
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) prefix[i] = static_cast<unsigned char>(n >> (8 * i));
  sink(prefix, 8);
  sink(header.data(), header.size());
  for (const auto& c : ready)
    if (c.nbytes() > 0) sink(c.data_ptr(), c.nbytes());
}
}  // namespace

void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata) {
  AtomicFile file(path);
  write_safetensors(tensors, metadata, [&](const void* p, size_t n) { file.write(p, n); });
  file.commit();
}

std::string serialize_safetensors(const NamedTensors& tensors, const std::map<std::string, std::string>& metadata) {
  std::string out;
  write_safetensors(tensors, metadata,
                    [&](const void* p, size_t n) { out.append(static_cast<const char*>(p), n); });
  return out;
}

}  // namespace xltune
