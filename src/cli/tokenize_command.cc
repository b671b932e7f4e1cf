// xltune tokenize: the ids SDXL's tokenizers give a text, so users can check how their trigger
// word and captions are split (a trigger that is one common word, or that splits into many
// pieces, trains worse).
#include <boost/program_options.hpp>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "core/check.h"
#include "text/clip_tokenizer.h"

namespace po = boost::program_options;

namespace xltune::cli {

namespace {
// The byte-level characters back to text, "</w>" shown as a trailing space marker.
std::string readable(const std::string& token) {
  std::string out = token;
  auto pos = out.find("</w>");
  if (pos != std::string::npos) out.replace(pos, 4, "·");
  return out;
}
}  // namespace

int tokenize_command(const std::vector<std::string>& args) {
  po::options_description options("Options");
  options.add_options()("help,h", "show this help")(
      "model", po::value<std::string>(), "SDXL model folder (reads tokenizer/ or tokenizer_2/)")(
      "vocab", po::value<std::string>(), "instead of --model: open_clip's bpe_simple_vocab_16e6.txt.gz")(
      "tokenizer", po::value<int>()->default_value(1), "1 (pads with <|endoftext|>) or 2 (pads with \"!\")")(
      "add", po::value<std::vector<std::string>>()->multitoken(),
      "tokens to add first, matched whole (e.g. --add \"<s0>\" \"<s1>\")")(
      "padded", "print the 77 ids the text encoder sees (BOS, ids, EOS, padding)")(
      "json", "print JSON, for scripts")("text", po::value<std::vector<std::string>>()->required(), "texts");
  po::positional_options_description positional;
  positional.add("text", -1);
  po::variables_map vm;
  if (!parse_options(args, options, positional, vm)) {
    std::cout << usage("tokenize", "(--model DIR | --vocab FILE) [--tokenizer 1|2] TEXT...",
                       "Prints the CLIP token ids of each TEXT as SDXL's tokenizers produce them,\n"
                       "with each token's text (· marks a word end).",
                       options);
    return 0;
  }
  const int which = vm["tokenizer"].as<int>();
  XLTUNE_USAGE_CHECK(which == 1 || which == 2, "--tokenizer: expected 1 or 2, got ", which);
  XLTUNE_USAGE_CHECK(vm.count("model") + vm.count("vocab") == 1, "give either --model DIR or --vocab FILE");
  ClipTokenizer tok = [&] {
    if (vm.count("model")) {
      const std::string dir = vm["model"].as<std::string>() + (which == 1 ? "/tokenizer" : "/tokenizer_2");
      XLTUNE_CHECK(std::filesystem::is_directory(dir), dir, ": no such folder (expected a diffusers SDXL model folder)");
      return ClipTokenizer::from_folder(dir);
    }
    return ClipTokenizer::from_bpe_file(vm["vocab"].as<std::string>(), which == 1 ? "<|endoftext|>" : "!");
  }();
  if (vm.count("add")) tok.add_tokens(vm["add"].as<std::vector<std::string>>());

  nlohmann::json out = nlohmann::json::array();
  for (const auto& text : vm["text"].as<std::vector<std::string>>()) {
    std::vector<int64_t> ids = vm.count("padded") ? tok.encode(text) : tok.tokenize(text);
    if (vm.count("json")) {
      nlohmann::json tokens = nlohmann::json::array();
      for (int64_t id : ids) tokens.push_back(tok.token(id));
      out.push_back({{"text", text}, {"ids", ids}, {"tokens", tokens}});
      continue;
    }
    std::cout << text << "\n  ids:   ";
    for (size_t i = 0; i < ids.size(); ++i) std::cout << (i ? " " : "") << ids[i];
    std::cout << "\n  tokens:";
    for (int64_t id : ids) std::cout << " " << readable(tok.token(id));
    std::cout << "\n  (" << ids.size() << " ids)\n";
  }
  if (vm.count("json")) std::cout << out.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  return 0;
}

}  // namespace xltune::cli
