# Shared by the command-line tests: source it after setting $dir (the test's work folder).
fail=0
expect() {  # expect STATUS DESCRIPTION COMMAND...: runs COMMAND, output in $dir/out and $dir/err
  local want=$1 what=$2; shift 2
  "$@" >"$dir/out" 2>"$dir/err"; local rc=$?
  if [ "$rc" -ne "$want" ]; then echo "FAIL $what: exit $rc, expected $want"; tail -n 20 "$dir/out" "$dir/err"; fail=1; return 1; fi
  echo "ok   $what"
}
has() {  # has FILE TEXT: FILE contains TEXT
  grep -qF -- "$2" "$1" || { echo "FAIL: '$2' not in $1:"; tail -n 20 "$1"; fail=1; return 1; }
}
lacks() {  # lacks PATH: PATH does not exist
  [ ! -e "$1" ] || { echo "FAIL: $1 exists"; fail=1; return 1; }
}
