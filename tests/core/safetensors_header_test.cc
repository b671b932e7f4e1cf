// The header parser alone: every rule of the format, each broken once.
#include "core/safetensors_header.h"

#include <gtest/gtest.h>

#include "core/error.h"

namespace xltune {
namespace {

SafetensorsHeader parse(const std::string& json, uint64_t data_size) {
  return parse_safetensors_header(json, data_size, "t.safetensors");
}

// The message of the Error that parsing raises ("" if it parses).
std::string error_of(const std::string& json, uint64_t data_size) {
  try {
    parse(json, data_size);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(SafetensorsHeader, ParsesTensorsInOffsetOrderAndMetadata) {
  auto h = parse(R"({"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]},)"
                 R"("a":{"dtype":"I8","shape":[4],"data_offsets":[0,4]},"__metadata__":{"format":"pt"}})",
                 12);
  ASSERT_EQ(h.tensors.size(), 2u);
  EXPECT_EQ(h.tensors[0].name, "a");
  EXPECT_EQ(h.tensors[1].name, "b");
  EXPECT_EQ(h.tensors[1].dtype, StDtype::kF32);
  EXPECT_EQ(h.tensors[1].shape, std::vector<int64_t>{2});
  EXPECT_EQ(h.metadata.at("format"), "pt");
}

TEST(SafetensorsHeader, EmptyAndScalarTensors) {
  auto h = parse(R"({"e":{"dtype":"F16","shape":[0,3],"data_offsets":[0,0]},)"
                 R"("s":{"dtype":"F64","shape":[],"data_offsets":[0,8]}})", 8);
  ASSERT_EQ(h.tensors.size(), 2u);
  EXPECT_EQ(h.tensors[0].name, "e");
  EXPECT_EQ(h.tensors[0].numel(), 0u);
  EXPECT_EQ(h.tensors[1].numel(), 1u);
}

TEST(SafetensorsHeader, EmptyHeaderAndTrailingSpaces) {
  EXPECT_TRUE(parse("{}      ", 0).tensors.empty());
}

TEST(SafetensorsHeader, EveryDtypeNameRoundTrips) {
  for (const char* name : {"BOOL", "U8", "I8", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "F64", "I64",
                           "U64", "C64", "F8_E5M2", "F8_E4M3", "F8_E8M0", "F8_E4M3FNUZ", "F8_E5M2FNUZ"}) {
    StDtype d;
    ASSERT_TRUE(parse_dtype_name(name, &d)) << name;
    EXPECT_STREQ(dtype_name(d), name);
    EXPECT_GT(dtype_size(d), 0u);
  }
}

struct BadCase {
  const char* label;
  std::string json;
  uint64_t data_size;
  const char* expected;  // a part of the message
};

TEST(SafetensorsHeader, RejectsEachBrokenRuleWithAMessageNamingIt) {
  const std::string ok_entry = R"("dtype":"F32","shape":[2],"data_offsets":[0,8])";
  const BadCase cases[] = {
      {"not an object", "[1,2]", 0, "does not start with '{'"},
      {"invalid json", "{\"a\":", 0, "not valid JSON"},
      {"invalid utf-8", "{\"\xff\xfe\":{" + ok_entry + "}}", 8, "not valid JSON"},
      {"duplicate name", "{\"a\":{" + ok_entry + "},\"a\":{" + ok_entry + "}}", 8, "'a' appears twice"},
      {"unknown dtype", R"({"a":{"dtype":"F128","shape":[1],"data_offsets":[0,16]}})", 16, "unknown dtype 'F128'"},
      {"sub-byte dtype", R"({"a":{"dtype":"F4","shape":[2],"data_offsets":[0,1]}})", 1, "not supported"},
      {"size mismatch", R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8, "needs 12"},
      {"hole", R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12, "hole in the data buffer"},
      {"overlap", "{\"a\":{" + ok_entry + R"(},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12,
       "overlaps"},
      {"past the end", "{\"a\":{" + ok_entry + "}}", 4, "ends at byte 8"},
      {"trailing bytes", "{\"a\":{" + ok_entry + "}}", 16, "trailing bytes"},
      {"negative dim", R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8, "non-negative integer"},
      {"float dim", R"({"a":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})", 8, "non-negative integer"},
      {"reversed offsets", R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", 8, "end before"},
      {"overflowing shape",
       R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}})", 0, "overflows"},
      {"missing key", R"({"a":{"dtype":"F32","shape":[2]}})", 8, "missing \"data_offsets\""},
      {"entry not object", R"({"a":7})", 0, "expected an object"},
      {"metadata not strings", R"({"__metadata__":{"k":1}})", 0, "expected a string"},
      {"deep nesting", "{\"a\":" + std::string(50000, '[') + std::string(50000, ']') + "}", 0, "levels deep"},
      {"offsets wrong arity", R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", 8, "expected [begin, end]"},
  };
  for (const auto& c : cases) {
    std::string message = error_of(c.json, c.data_size);
    EXPECT_NE(message.find(c.expected), std::string::npos) << c.label << ": got '" << message << "'";
    EXPECT_EQ(message.rfind("t.safetensors", 0), 0u) << c.label << ": message must start with the file: " << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << c.label << ": message must be one line";
  }
}

TEST(SafetensorsHeader, PrefixChecks) {
  unsigned char prefix[8] = {16, 0, 0, 0, 0, 0, 0, 0};
  EXPECT_EQ(parse_safetensors_prefix(prefix, 24, "f"), 16u);
  EXPECT_THROW(parse_safetensors_prefix(prefix, 4, "f"), Error);   // shorter than the length field
  EXPECT_THROW(parse_safetensors_prefix(prefix, 20, "f"), Error);  // header runs past the end
  unsigned char huge[8] = {0, 0, 0, 0, 1, 0, 0, 0};               // 4 GiB header
  EXPECT_THROW(parse_safetensors_prefix(huge, uint64_t{1} << 40, "f"), Error);
  unsigned char tiny[8] = {1, 0, 0, 0, 0, 0, 0, 0};
  EXPECT_THROW(parse_safetensors_prefix(tiny, 9, "f"), Error);
}

TEST(SafetensorsHeader, FormatPadsToEightAndParsesBack) {
  SafetensorsEntry a{"w", StDtype::kF32, {3}, 0, 12};
  SafetensorsEntry b{"v", StDtype::kI8, {1}, 12, 13};
  std::string text = format_safetensors_header({a, b}, {{"k", "v"}});
  EXPECT_EQ(text.size() % 8, 0u);
  EXPECT_EQ(text.rfind("{\"__metadata__\":{\"k\":\"v\"},\"w\":", 0), 0u) << text;
  auto h = parse(text, 13);
  ASSERT_EQ(h.tensors.size(), 2u);
  EXPECT_EQ(h.tensors[1].name, "v");
  EXPECT_THROW(format_safetensors_header({a, a}, {}), Error);
}

}  // namespace
}  // namespace xltune
