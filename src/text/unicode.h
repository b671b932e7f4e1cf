// The Unicode facts the CLIP tokenizer needs (via utf8proc): UTF-8 decoding, NFC, lowercase,
// and the classes \p{L}, \p{N} and \s of its split pattern.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace xltune::unicode {

// Code points of UTF-8 text; throws xltune::Error naming the byte offset if it is not UTF-8.
std::vector<char32_t> decode(const std::string& text);
std::string encode(const std::vector<char32_t>& code_points);
void append_utf8(std::string& out, char32_t c);

std::string nfc(const std::string& text);
// Per code point, as Rust's char::to_lowercase (which the tokenizers library uses): simple
// case mapping, plus U+0130 (İ) -> "i̇", the one unconditional multi-character lowercase.
std::vector<char32_t> lowercase(const std::vector<char32_t>& text);

bool is_letter(char32_t c);      // \p{L}: Lu Ll Lt Lm Lo
bool is_number(char32_t c);      // \p{N}: Nd Nl No
bool is_whitespace(char32_t c);  // \s: the White_Space property

}  // namespace xltune::unicode
