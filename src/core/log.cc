#include "core/log.h"

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <ctime>
#include <mutex>

#include "core/check.h"

namespace xltune {

namespace {
LogLevel level_from_env() {
  const char* text = std::getenv("XLTUNE_LOG_LEVEL");
  if (text == nullptr || *text == '\0') return LogLevel::kInfo;
  try {
    return parse_log_level(text);
  } catch (const Error&) {
    return LogLevel::kInfo;  // a bad variable must not stop the program before it can report
  }
}
std::atomic<int> g_level{static_cast<int>(level_from_env())};
std::atomic<int> g_rank{-1};
std::mutex g_write_mutex;
}  // namespace

void set_log_level(LogLevel level) { g_level = static_cast<int>(level); }
LogLevel log_level() { return static_cast<LogLevel>(g_level.load()); }
void set_log_rank(int rank) { g_rank = rank; }

LogLevel parse_log_level(const std::string& text) {
  if (text == "debug") return LogLevel::kDebug;
  if (text == "info") return LogLevel::kInfo;
  if (text == "warn" || text == "warning") return LogLevel::kWarn;
  if (text == "error") return LogLevel::kError;
  if (text == "off") return LogLevel::kOff;
  XLTUNE_FAIL("log level: expected debug, info, warn, error or off, got '", text, "'");
}

std::string format_log_line(LogLevel level, int rank, const std::string& message, bool with_time) {
  static const char kLetters[] = {'D', 'I', 'W', 'E', '-'};
  std::string line = "[xltune";
  if (rank >= 0) line += " r" + std::to_string(rank);
  if (with_time) {
    std::time_t now = std::time(nullptr);
    std::tm local{};
    localtime_r(&now, &local);
    char clock[16];
    std::strftime(clock, sizeof clock, " %H:%M:%S", &local);
    line += clock;
  }
  line += ' ';
  line += kLetters[static_cast<int>(level)];
  line += "] ";
  line += message;
  line += '\n';
  return line;
}

void log_message(LogLevel level, const std::string& message) {
  std::string line = format_log_line(level, g_rank.load(), message, true);
  std::lock_guard<std::mutex> lock(g_write_mutex);
  // One write(2) per line: whole lines even when several ranks share a terminal.
  const char* p = line.data();
  size_t left = line.size();
  while (left > 0) {
    ssize_t n = ::write(STDERR_FILENO, p, left);
    if (n <= 0) break;
    p += n;
    left -= static_cast<size_t>(n);
  }
}

}  // namespace xltune
