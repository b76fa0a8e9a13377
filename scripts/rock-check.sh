#!/bin/sh
# Checks the rock offline, in a scratch tree (the system's rocks and
# luarocks configuration are not touched):
#   scripts/rock-check.sh rockspec/lunatls-X-1.rockspec build/dist/lunatls-X-1.src.rock
# 1. `luarocks lint` of every rockspec in rockspec/;
# 2. `luarocks make` of the scm rockspec from a copy of this tree, `require "lunatls"`;
# 3. `luarocks install` of the .src.rock (it carries its tarball: no network),
#    `require "lunatls.luasec"` and the version; 4. `luarocks remove` leaves
#    nothing of lunatls behind.
# LuaSocket comes from Debian (lua-socket), not from a rock: --deps-mode=none.
set -eu
rockspec=$1
src_rock=$2
lr="luarocks --lua-version=5.4"
tree=$(mktemp -d)
trap 'rm -rf "$tree"' EXIT
version=$(cat VERSION)

for spec in rockspec/*.rockspec; do
  $lr lint "$spec"
  echo "lint: $spec ok"
done

lua_in_tree() {
  LUA_PATH="$tree/share/lua/5.4/?.lua;$tree/share/lua/5.4/?/init.lua;;" \
  LUA_CPATH="$tree/lib/lua/5.4/?.so;;" lua5.4 -e "$1"
}

# luarocks make builds in the source directory: use a copy (the dist tarball's
# files), so no objects are left in this tree.
mkdir "$tree/src"
tar -xzf "build/dist/lunatls-$version.tar.gz" -C "$tree/src"
(cd "$tree/src/lunatls-$version" && $lr make --tree="$tree" --deps-mode=none rockspec/lunatls-scm-1.rockspec >/dev/null)
lua_in_tree 'local t = require "lunatls"; print("luarocks make: lunatls " .. t._VERSION)' 
$lr remove --tree="$tree" lunatls >/dev/null

$lr install --tree="$tree" --deps-mode=none "$src_rock" >/dev/null
lua_in_tree "local t = require 'lunatls'; assert(t._VERSION == '$version', t._VERSION);
  local ssl = require 'lunatls.luasec'; require 'lunatls.luasec.https';
  print('luarocks install: lunatls ' .. t._VERSION .. ', lunatls.luasec ' .. ssl._VERSION)"
test -d "$tree/lib/luarocks/rocks-5.4/lunatls/$version-1/docs"
$lr remove --tree="$tree" lunatls >/dev/null
rm -rf "$tree/src"
left=$(find "$tree" -path '*lunatls*' | head -5)
if [ -n "$left" ]; then
  echo "luarocks remove left: $left" >&2
  exit 1
fi
echo "luarocks remove: nothing of lunatls left"
