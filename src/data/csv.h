// A CSV reader for caption files (RFC 4180: quoted fields, "" inside quotes, line breaks
// inside quotes, CRLF, LF or CR line ends), tolerant of what spreadsheets write: a UTF-8 byte
// order mark, a ';' or tab separator (European Excel), blank lines, a missing final newline.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace xltune {

struct CsvRow {
  int line = 0;  // 1-based line where the row starts, for messages
  std::vector<std::string> fields;
};

// Throws Error naming `name` and the line for an unterminated quoted field or a character
// after a closing quote.
std::vector<CsvRow> parse_csv(std::string_view text, const std::string& name);

}  // namespace xltune
