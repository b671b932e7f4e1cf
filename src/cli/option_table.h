// One home for a command's options: each option is bound once to the field that holds it
// (po::value(&field), its default the field's initial value), and the same table lists every
// value as JSON afterwards (run_config.json). Config files (configs/*.cfg, "name = value"
// lines, Boost.Program_options syntax) go through the same table; the command line wins.
#pragma once

#include <boost/program_options.hpp>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "data/preprocess.h"

namespace xltune::cli {

class OptionTable {
 public:
  explicit OptionTable(const std::string& caption) : description_(caption) {}

  template <typename T>
  OptionTable& add(const char* name, T* field, const char* help) {
    description_.add_options()(name, boost::program_options::value<T>(field)->default_value(*field, text(*field)), help);
    values_.emplace_back(name, [field] { return nlohmann::ordered_json(*field); });
    return *this;
  }
  template <typename T>
  OptionTable& add_optional(const char* name, std::optional<T>* field, const char* help) {
    description_.add_options()(name, boost::program_options::value<T>()->notifier([field](const T& v) { *field = v; }),
                               help);
    values_.emplace_back(name, [field] { return *field ? nlohmann::ordered_json(**field) : nlohmann::ordered_json(); });
    return *this;
  }

  // An option whose absence means something (the field stays empty) but that still has a value
  // to show: `shown` in --help and values_into() when it was not given.
  template <typename T>
  OptionTable& add_optional(const char* name, std::optional<T>* field, T shown, const char* help) {
    // Not default_value(): its notifier would fill the field when the option is absent.
    description_.add_options()(name, boost::program_options::value<T>()->notifier([field](const T& v) { *field = v; }),
                               (std::string(help) + " (default " + text(shown) + ")").c_str());
    values_.emplace_back(name, [field, shown] { return nlohmann::ordered_json(field->value_or(shown)); });
    return *this;
  }

  // An option whose value is one of a few names, each standing for a value of E: the field holds
  // the value; --help and values_into() show the name; another name is an error listing them.
  template <typename E>
  OptionTable& add_choice(const char* name, E* field, std::vector<std::pair<std::string, E>> choices,
                          const char* help) {
    auto names = std::make_shared<const std::vector<std::pair<std::string, E>>>(std::move(choices));
    auto notify = [field, names, option = std::string(name)](const std::string& given) {
      std::string expected;
      for (const auto& [choice, value] : *names) {
        if (choice == given) {
          *field = value;
          return;
        }
        expected += (expected.empty() ? "" : ", ") + choice;
      }
      throw boost::program_options::error("--" + option + " '" + given + "': expected " + expected);
    };
    description_.add_options()(
        name, boost::program_options::value<std::string>()->default_value(name_of(*names, *field))->notifier(notify),
        help);
    values_.emplace_back(name, [field, names] { return nlohmann::ordered_json(name_of(*names, *field)); });
    return *this;
  }

  // An option that may be given several times (each adds one value); none by default.
  OptionTable& add_list(const char* name, std::vector<std::string>* field, const char* help) {
    description_.add_options()(name, boost::program_options::value<std::vector<std::string>>(field)->composing(), help);
    values_.emplace_back(name, [field] { return nlohmann::ordered_json(*field); });
    return *this;
  }

  boost::program_options::options_description& description() { return description_; }
  // Every option's value (after notify), in table order.
  void values_into(nlohmann::ordered_json& out) const {
    for (const auto& [name, read] : values_) out[name] = read();
  }

 private:
  template <typename T>
  static std::string text(const T& v) {
    std::ostringstream out;
    if constexpr (std::is_same_v<T, bool>) out << (v ? "true" : "false");
    else if constexpr (std::is_same_v<T, std::string>) out << (v.empty() ? "\"\"" : "\"" + v + "\"");
    else out << v;
    return out.str();
  }
  template <typename E>
  static std::string name_of(const std::vector<std::pair<std::string, E>>& choices, E value) {
    for (const auto& [choice, v] : choices)
      if (v == value) return choice;
    return "?";
  }
  boost::program_options::options_description description_;
  std::vector<std::pair<std::string, std::function<nlohmann::ordered_json()>>> values_;
};

// --resolution is left to the command: preprocess binds it to PreprocessOptions::resolution,
// train to an optional (shards carry their own); both with this help.
extern const char* const kResolutionHelp;
// The preprocessing options that `xltune preprocess` and `xltune train` share, under the
// seed's names and defaults.
void add_preprocess_options(OptionTable& table, PreprocessOptions& options);
// Limits on what an untrusted archive may unpack.
void add_ingest_limit_options(OptionTable& table, PreprocessOptions& options);
// After notify: values that are set once and used in two places.
void finish_preprocess_options(PreprocessOptions& options);

// True when `name` was given on the command line or in a config file (not defaulted).
bool given(const boost::program_options::variables_map& vm, const char* name);

}  // namespace xltune::cli
