#!/bin/sh
# The Debian packages each make target needs, in one place, and their
# installation: `scripts/deps.sh demo test` installs what `make demo` and
# `make test` need and is not installed yet (apt-get update once, first);
# `scripts/deps.sh --list test` prints the list only.
#
# Targets: build (compile the module), demo, test, robust (asan, valgrind,
# gcstress, fuzz), bench, lint, docs, dist (make dist, make rock-check).
# Nothing here changes luarocks' configuration: the Makefile and
# scripts/rock-check.sh pass --lua-version=5.4 to luarocks instead.
set -eu

packages_of() {
  case $1 in
    build) echo "gcc make lua5.4 liblua5.4-dev libssl-dev" ;;
    demo) packages_of build ;;
    # the suite: busted and LuaSocket, the real peers (openssl, gnutls-cli
    # and gnutls-serv, curl), LuaSec for spec/40's differential programs,
    # cqueues and luv for the event-loop transports and the scheduler's luv
    # backend, clang's libFuzzer for the fuzz smoke, gcc's ASan for make oom
    test) packages_of build
          echo "lua-busted lua-socket openssl gnutls-bin curl ca-certificates lua-sec"
          echo "lua-cqueues lua-luv"
          echo "clang libclang-rt-14-dev" ;;
    robust) packages_of test; echo "valgrind clang libclang-rt-14-dev" ;;
    bench) packages_of build; echo "lua-socket lua-sec lua-cqueues lua-luaossl lua-luv valgrind gnuplot-nox" ;;
    lint) echo "lua-check" ;;
    docs) echo "lua-ldoc" ;;
    dist) packages_of build; echo "git tar gzip zip luarocks lua-socket" ;;
    *) echo "deps.sh: unknown target '$1' (build demo test robust bench lint docs dist)" >&2
       return 1 ;;
  esac
}

list=false
if [ "${1:-}" = "--list" ]; then list=true; shift; fi
[ $# -gt 0 ] || { echo "usage: scripts/deps.sh [--list] target..." >&2; exit 2; }

for target in "$@"; do packages_of "$target" >/dev/null || exit 2; done
wanted=$(for target in "$@"; do packages_of "$target"; done | tr ' ' '\n' | sort -u)
if $list; then
  echo $wanted
  exit 0
fi

missing=
for p in $wanted; do
  dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed' ||
    missing="$missing $p"
done
[ -n "$missing" ] || exit 0

sudo=
[ "$(id -u)" = 0 ] || sudo=sudo
echo "installing:$missing"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing
