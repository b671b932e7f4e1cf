// Logging with a rank prefix and levels. One line per call, written whole, so lines from
// threads and ranks do not interleave within a line:
//   [xltune r0 12:03:04 I] loaded 1,680 tensors
// The level comes from XLTUNE_LOG_LEVEL (debug, info, warn, error) or set_log_level().
#pragma once

#include <string>

#include "core/error.h"

namespace xltune {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3, kOff = 4 };

void set_log_level(LogLevel level);
LogLevel log_level();
// Parses "debug", "info", "warn", "error" or "off"; throws Error naming the text otherwise.
LogLevel parse_log_level(const std::string& text);
// The rank shown in every line; -1 (the default) shows none, for single-process commands.
void set_log_rank(int rank);
// Formats a line as it will be printed, without the clock (for tests).
std::string format_log_line(LogLevel level, int rank, const std::string& message, bool with_time);
void log_message(LogLevel level, const std::string& message);

template <typename... Args>
void log_debug(const Args&... args) { if (log_level() <= LogLevel::kDebug) log_message(LogLevel::kDebug, str(args...)); }
template <typename... Args>
void log_info(const Args&... args) { if (log_level() <= LogLevel::kInfo) log_message(LogLevel::kInfo, str(args...)); }
template <typename... Args>
void log_warn(const Args&... args) { if (log_level() <= LogLevel::kWarn) log_message(LogLevel::kWarn, str(args...)); }
template <typename... Args>
void log_error(const Args&... args) { if (log_level() <= LogLevel::kError) log_message(LogLevel::kError, str(args...)); }

}  // namespace xltune
