#!/usr/bin/env bash
# Every malformed safetensors file must end `xltune inspect` with exit status 1 and exactly one
# line on stderr that names the file and says what is wrong (the expected part, from
# expected.tsv); never a crash, a signal or a sanitizer report. The good file must inspect fine.
#   inspect_corpus_test.sh XLTUNE PYTHON DIR
set -u
xltune=$1 python=$2 dir=$3
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$dir" && "$python" "$here/../reference/make_malformed_safetensors.py" "$dir" || exit 1
fail=0 count=0
while IFS=$'\t' read -r file expected; do
  count=$((count + 1))
  "$xltune" inspect "$dir/$file" >"$dir/out" 2>"$dir/err"
  rc=$?
  lines=$(wc -l <"$dir/err")
  if [ "$rc" -ne 1 ]; then
    echo "FAIL $file: exit status $rc (expected 1)"; cat "$dir/err"; fail=1
  elif [ "$lines" -ne 1 ]; then
    echo "FAIL $file: $lines lines on stderr (expected 1)"; cat "$dir/err"; fail=1
  elif ! grep -qF -- "$file" "$dir/err"; then
    echo "FAIL $file: message does not name the file: $(cat "$dir/err")"; fail=1
  elif ! grep -qF -- "$expected" "$dir/err"; then
    echo "FAIL $file: message lacks '$expected': $(cat "$dir/err")"; fail=1
  else
    echo "ok   $file: $(cat "$dir/err")"
  fi
done <"$dir/expected.tsv"
if ! "$xltune" inspect "$dir/good.safetensors" >"$dir/out" 2>"$dir/err" || ! grep -q "total: 2 tensors, 6 parameters" "$dir/out"; then
  echo "FAIL good.safetensors: $(cat "$dir/err" "$dir/out")"; fail=1
fi
echo "$count malformed files checked"
[ "$count" -ge 15 ] || { echo "FAIL: corpus has only $count files"; fail=1; }
exit $fail
