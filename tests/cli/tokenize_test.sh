#!/usr/bin/env bash
# xltune tokenize on an SDXL model folder's tokenizers (made by tests/reference/
# make_clip_tokenizers.py): ids, the pad token of each tokenizer, added trigger tokens, --json,
# and clear errors for a folder that is not a model.
#   tokenize_test.sh XLTUNE MODEL_DIR
set -u
xltune=$1 model=$2
fail=0
check() {  # check DESCRIPTION EXPECTED_SUBSTRING COMMAND...
  local what=$1 want=$2; shift 2
  local out; out=$("$@" 2>&1); local rc=$?
  if [ $rc -ne 0 ] || ! grep -qF -- "$want" <<<"$out"; then echo "FAIL $what (exit $rc): $out"; fail=1; else echo "ok   $what"; fi
}
check "caption ids" "ids:   320 1125 539 320 2368" "$xltune" tokenize --model "$model" "a photo of a cat"
check "tokenizer 2 matches '!' whole" "ids:   3306 0" "$xltune" tokenize --model "$model" --tokenizer 2 "hello!"
check "tokenizer 1 gives '!</w>'" "ids:   3306 256" "$xltune" tokenize --model "$model" "hello!"
check "trigger tokens" "ids:   320 1125 539 49408 49409" "$xltune" tokenize --model "$model" --add "<s0>" "<s1>" -- "a photo of <s0><s1>"
check "padded to 77" "(77 ids)" "$xltune" tokenize --model "$model" --padded "a cat"
check "json" '"ids": [' "$xltune" tokenize --model "$model" --json "a cat"
out=$("$xltune" tokenize --model /nonexistent "x" 2>&1); rc=$?
if [ $rc -ne 1 ] || ! grep -q "/nonexistent/tokenizer: no such folder" <<<"$out"; then echo "FAIL missing model (exit $rc): $out"; fail=1; else echo "ok   missing model folder"; fi
out=$("$xltune" tokenize --tokenizer 3 --model "$model" "x" 2>&1); rc=$?
if [ $rc -ne 2 ]; then echo "FAIL --tokenizer 3 (exit $rc): $out"; fail=1; else echo "ok   bad --tokenizer"; fi
exit $fail
