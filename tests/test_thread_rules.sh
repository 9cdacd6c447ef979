#!/usr/bin/env bash
# The test of scripts/check-thread-rules: a copy of ROOT/src and ROOT/threads must pass; then one
# violation of each kind is planted in turn (the copy restored between plants) and the checker
# must exit 1 naming the planted file, line and rule; comments, strings and allowed declarations
# planted the same way must not count. Stops at the first failed expectation.
#
#   tests/test_thread_rules.sh ROOT      ROOT: the repository root (default: this script's ../)
set -euo pipefail

root="$(cd "${1:-$(dirname "${BASH_SOURCE[0]}")/..}" && pwd)"
checker="$root/scripts/check-thread-rules"
[ -x "$checker" ] || { echo "FAIL: $checker is missing or not executable" >&2; exit 1; }

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/clean"
cp -a "$root/src" "$root/threads" "$tmp/clean/"
tree="$tmp/tree"

fail() {
  echo "FAIL: $*" >&2
  [ -f "$tmp/out" ] && sed 's/^/  | /' "$tmp/out" >&2
  exit 1
}

restore() {
  rm -rf "$tree"
  cp -a "$tmp/clean" "$tree"
}

# Runs the checker on the copy; sets $status, output in $tmp/out.
run_checker() {
  status=0
  "$checker" "$tree" >"$tmp/out" 2>&1 || status=$?
}

# plant_in_function FILE TEXT: puts TEXT on a new line at the top of the first function body of
# FILE (a definition whose `{` ends its first line); sets $line to the planted line's number.
plant_in_function() {
  local file="$tree/$1" text="$2" at
  at="$(grep -nE '^[[:space:]]*[A-Za-z_][A-Za-z0-9_:<>&*, ]* [A-Za-z_][A-Za-z0-9_]*\([^;=]*\)( const)?( noexcept)? \{$' "$file" |
        grep -vE '^[0-9]+:[[:space:]]*(if|for|while|switch|catch|return|else) ' | head -n1 | cut -d: -f1)"
  [ -n "$at" ] || fail "no function body to plant in, in $1"
  # ENVIRON, not -v: awk -v would read the backslashes of TEXT as escapes.
  PLANT="$text" awk -v at="$at" '{ print } NR == at { print "  " ENVIRON["PLANT"] }' \
    "$file" >"$file.new"
  mv "$file.new" "$file"
  line=$((at + 1))
}

# plant_at_end FILE TEXT: appends TEXT (at namespace scope); sets $line to its first line.
plant_at_end() {
  local file="$tree/$1"
  line=$(($(wc -l <"$file") + 1))
  printf '%s\n' "$2" >>"$file"
}

# plant_at_top FILE TEXT: puts TEXT on a new first line; sets $line to 1.
plant_at_top() {
  local file="$tree/$1"
  { printf '%s\n' "$2"; cat "$file"; } >"$file.new"
  mv "$file.new" "$file"
  line=1
}

# expect_found FILE LINE RULE WHAT: the checker fails and reports FILE:LINE: RULE.
expect_found() {
  run_checker
  [ "$status" -eq 1 ] || fail "$4: expected exit 1, got $status"
  grep -qF "$1:$2: $3: " "$tmp/out" || fail "$4: expected a finding '$1:$2: $3: ...'"
  grep -qE '^thread rules: .*violation' "$tmp/out" || fail "$4: no summary line"
  echo "ok: $4 -> $(grep -F "$1:$2: $3: " "$tmp/out" | head -n1)"
}

# expect_clean WHAT: the checker passes.
expect_clean() {
  run_checker
  [ "$status" -eq 0 ] || fail "$1: expected exit 0, got $status"
  grep -qE '^thread rules: [0-9]+ files? checked, no violations$' "$tmp/out" ||
    fail "$1: no 'no violations' summary"
  echo "ok: $1 -> passes"
}

echo "checking $checker on a copy of $root/src and $root/threads"
restore
expect_clean "the clean copy"

# --- Each kind of violation, one at a time -----------------------------------------------------
restore
plant_in_function threads/broker.cpp 'static int counter = 0;'
expect_found threads/broker.cpp "$line" mutable-static "a mutable static in a function"

restore
plant_at_top threads/client.cpp '#include <mutex>'
expect_found threads/client.cpp 1 mutex "#include <mutex>"
plant_in_function threads/client.cpp 'std::mutex m;'
expect_found threads/client.cpp "$line" mutex "a std::mutex"

restore
plant_in_function threads/controller.cpp 'std::atomic<int> n{0};'
expect_found threads/controller.cpp "$line" atomic "a std::atomic"

restore
plant_in_function src/fleet/report.cpp 'volatile int spin = 0;'
expect_found src/fleet/report.cpp "$line" atomic "a volatile"

restore
plant_in_function threads/link.cpp 'std::condition_variable cv;'
expect_found threads/link.cpp "$line" condition-variable "a std::condition_variable"

restore
plant_in_function threads/worker.cpp 'std::thread t([]{});'
expect_found threads/worker.cpp "$line" thread-start "a std::thread outside src/wire/actor.cpp"

restore
plant_in_function src/fleet/supervisor.cpp 'thread_local int x = 0;'
expect_found src/fleet/supervisor.cpp "$line" thread-local "a thread_local"

restore
plant_at_end src/wire/protocol.cpp 'namespace zyolo { int g_requests = 0; }'
expect_found src/wire/protocol.cpp "$line" mutable-global "a mutable namespace-scope variable"

restore
plant_at_end threads/worker.cpp 'namespace zyolo { struct Tally { static int served; }; }'
expect_found threads/worker.cpp "$line" mutable-static "a mutable static data member"

restore
plant_in_function threads/broker.cpp 'auto send = [&frontend_socket] { (void)frontend_socket; };'
expect_found threads/broker.cpp "$line" socket-capture "a lambda capturing a socket"

# --- What must not count -----------------------------------------------------------------------
restore
plant_in_function threads/broker.cpp '// std::mutex in a comment'
expect_clean "std::mutex in a // comment"

restore
plant_in_function threads/broker.cpp 'const std::string text = "std::mutex";'
expect_clean '"std::mutex" in a string'

restore
plant_in_function threads/worker.cpp '/* static int counter = 0; std::atomic<int> n; */'
expect_clean "a /* */ comment"

restore
plant_in_function src/fleet/supervisor.cpp 'const std::string raw = R"(thread_local std::condition_variable cv;)";'
expect_clean "a raw string"

restore
plant_at_end src/fleet/report.cpp 'namespace zyolo { static const int kLimit = 3; static void helper(int times = 3); }'
expect_clean "a static const and a static function"

echo "thread rules test: all expectations met"
