#include "data/csv.h"

#include "core/check.h"

namespace xltune {

namespace {
// ',' unless the first line has none and has ';' or a tab.
char detect_separator(std::string_view text) {
  std::string_view first = text.substr(0, text.find_first_of("\r\n"));
  if (first.find(',') != std::string_view::npos) return ',';
  if (first.find(';') != std::string_view::npos) return ';';
  if (first.find('\t') != std::string_view::npos) return '\t';
  return ',';
}

bool blank(const CsvRow& row) { return row.fields.size() == 1 && row.fields[0].empty(); }
}  // namespace

std::vector<CsvRow> parse_csv(std::string_view text, const std::string& name) {
  if (text.substr(0, 3) == "\xEF\xBB\xBF") text.remove_prefix(3);
  const char sep = detect_separator(text);
  std::vector<CsvRow> rows;
  CsvRow row;
  row.line = 1;
  std::string field;
  int line = 1;
  size_t i = 0;
  auto end_row = [&] {
    row.fields.push_back(std::move(field));
    field.clear();
    if (!blank(row)) rows.push_back(std::move(row));
    row = CsvRow{};
  };
  while (i < text.size()) {
    char c = text[i];
    // A quote opens a quoted field at its start, also after spaces ("a.jpg, \"b, c\"", which
    // people type by hand); the spaces are dropped.
    if (c == '"' && field.find_first_not_of(" ") == std::string::npos) {
      field.clear();
      const int start_line = line;
      ++i;
      for (;;) {
        XLTUNE_CHECK(i < text.size(), name, ": line ", start_line, ": a quoted field is never closed");
        char q = text[i++];
        if (q == '"') {
          if (i < text.size() && text[i] == '"') {
            field += '"';
            ++i;
            continue;
          }
          break;
        }
        if (q == '\n' || (q == '\r' && !(i < text.size() && text[i] == '\n'))) ++line;
        field += q;
      }
      XLTUNE_CHECK(i == text.size() || text[i] == sep || text[i] == '\r' || text[i] == '\n', name, ": line ", line,
                   ": unexpected '", text[i], "' after a closing quote (a quote inside a field must be doubled: \"\")");
      continue;
    }
    if (c == sep) {
      row.fields.push_back(std::move(field));
      field.clear();
      ++i;
    } else if (c == '\r' || c == '\n') {
      end_row();
      i += (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ? 2 : 1;
      row.line = ++line;
    } else {
      field += c;
      ++i;
    }
  }
  if (!field.empty() || !row.fields.empty()) end_row();
  return rows;
}

}  // namespace xltune
