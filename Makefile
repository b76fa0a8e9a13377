# lunatls: `make demo` and `make test` do all the set-up on a fresh Debian 12.

LUA      ?= lua5.4
LUA_INC  ?= /usr/include/lua5.4
CC       ?= cc
CFLAGS   ?= -O2 -g
WARNINGS  = -std=c99 -Wall -Wextra -Werror -pedantic -Wshadow \
            -Wmissing-prototypes -Wstrict-prototypes
ALL_CFLAGS = $(WARNINGS) $(CFLAGS) -fPIC -fvisibility=hidden -I$(LUA_INC)
LIBS      = -lssl -lcrypto

SOURCES  = $(wildcard src/*.c)
HEADERS  = $(wildcard src/*.h)
BUILD   ?= build
MODULE   = $(BUILD)/lunatls/core.so
BUSTED   = $(LUA) /usr/bin/busted

# Debian packages: to build, to test, and the real TLS peers the tests use.
PACKAGES = gcc make lua5.4 liblua5.4-dev libssl-dev lua-busted lua-socket \
           luarocks openssl gnutls-bin curl ca-certificates

.PHONY: all deps demo test clean

all: $(MODULE)

$(MODULE): $(SOURCES) $(HEADERS) Makefile
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -shared -o $@ $(SOURCES) $(LDFLAGS) $(LIBS)

# Installs the missing packages only (apt-get update once, first); points
# luarocks at Lua 5.4 when it defaults to another version.
deps:
	@missing=$$(for p in $(PACKAGES); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; \
	  done); \
	if [ -n "$$missing" ]; then \
	  sudo=; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  echo "installing:" $$missing; \
	  $$sudo apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@if [ "$$(luarocks config lua_version 2>/dev/null)" != 5.4 ]; then \
	  sudo=; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  $$sudo luarocks config --scope system lua_version 5.4 >/dev/null; \
	fi

demo: deps
	$(MAKE) all
	$(LUA) examples/demo.lua

test: deps
	$(MAKE) all
	$(BUSTED)

clean:
	rm -rf $(BUILD)

# ---- benchmark (issue 5; bench/README.md) ----------------------------------
# `make bench`: the full run (C harness vs lunatls, LuaSec and cqueues over
# loopback TCP, memory per connection, callgrind instruction counts): a few
# minutes. It installs the packages it alone needs; they are deliberately not
# in PACKAGES, so `make test` never installs them. `make bench-smoke`: a few
# iterations of everything but callgrind, in about a second; `make test` runs
# it through spec/90-bench_smoke_spec.lua so the benchmark cannot rot.
# BENCH_ARGS passes options to bench/run.lua (e.g. BENCH_ARGS=--rounds=11).
BENCH_PACKAGES = lua-sec lua-cqueues lua-luaossl valgrind
BENCH_HARNESS  = $(BUILD)/bench/harness
BENCH_ARGS    ?=

.PHONY: bench bench-smoke bench-deps bench-harness

bench-harness: $(BENCH_HARNESS)

$(BENCH_HARNESS): bench/harness.c Makefile
	@mkdir -p $(dir $@)
	$(CC) $(WARNINGS) $(CFLAGS) -o $@ bench/harness.c $(LDFLAGS) $(LIBS)

bench-deps:
	@$(MAKE) --no-print-directory deps PACKAGES="$(BENCH_PACKAGES)"

bench: deps bench-deps
	$(MAKE) all bench-harness
	$(LUA) bench/run.lua $(BENCH_ARGS)

bench-smoke: all bench-harness
	$(LUA) bench/run.lua --smoke
