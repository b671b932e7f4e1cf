// CRC-32C (Castagnoli), the checksum of checkpoint files in their manifests: a truncated or
// corrupted file is caught before it is loaded. SSE 4.2's crc32 instruction where the CPU has
// it, else tables, 8 bytes at a time (the same values: tests/core/crc32c_test.cc).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace xltune {

uint32_t crc32c(const void* data, size_t size, uint32_t crc = 0);
// The table-driven form, whatever the CPU (for the test that both agree).
uint32_t crc32c_portable(const void* data, size_t size, uint32_t crc = 0);
// The checksum of a whole file, read in chunks; throws Error naming the file if it cannot be read.
uint32_t crc32c_of_file(const std::string& path, uint64_t* size = nullptr);

}  // namespace xltune
