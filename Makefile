# lunatls: `make demo` and `make test` do all the set-up on a fresh Debian 12.

LUA      ?= lua5.4
LUA_INC  ?= /usr/include/lua5.4
CC       ?= cc
CFLAGS   ?= -O2 -g
WARNINGS  = -std=c99 -Wall -Wextra -Werror -pedantic -Wshadow \
            -Wmissing-prototypes -Wstrict-prototypes
# The release: one place, the VERSION file (lunatls._VERSION, rockspec, dist).
VERSION  := $(shell cat VERSION)
ALL_CFLAGS = $(WARNINGS) $(CFLAGS) -fPIC -fvisibility=hidden -I$(LUA_INC) \
             -DLUNATLS_VERSION='"$(VERSION)"'

LIBS      = -lssl -lcrypto

SOURCES  = $(wildcard src/*.c)
HEADERS  = $(wildcard src/*.h)
BUILD   ?= build
MODULE   = $(BUILD)/lunatls/core.so
BUSTED   = $(LUA) /usr/bin/busted

# The Debian packages of each target are listed in scripts/deps.sh, the one
# place that knows them; `deps-<target>` installs the missing ones (apt-get).
DEPS     = sh scripts/deps.sh

.PHONY: all demo test lint docs clean

all: $(MODULE)

$(MODULE): $(SOURCES) $(HEADERS) Makefile VERSION
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -shared -o $@ $(SOURCES) $(LDFLAGS) $(LIBS)

# Test peers that cannot choose their address (gnutls-serv) run with this
# preloaded, so that they listen on loopback only. Every suite target (test,
# asan, valgrind, gcstress) builds it; spec/helpers/peers.lua refuses to start
# gnutls-serv without it.
LOOPBACK_SHIM = $(BUILD)/loopback_bind.so
$(LOOPBACK_SHIM): spec/helpers/loopback_bind.c
	@mkdir -p $(dir $@)
	$(CC) -Wall -Wextra -Werror -O2 -fPIC -shared -o $@ $< -ldl

# `make deps-demo`, `make deps-test`, ...: the missing packages of a target
# (make demo: the compiler, Lua 5.4 and its headers, libssl-dev; nothing else).
deps-%:
	@$(DEPS) $*

# Prerequisites are made left to right: the packages first.
demo: deps-demo all
	$(LUA) examples/demo.lua

test: deps-test all $(LOOPBACK_SHIM)
	$(BUSTED)

# luacheck with .luacheckrc (Lua 5.4, busted's globals in spec/).
lint: deps-lint
	luacheck lua spec examples

# LDoc with config.ld into build/docs; any LDoc warning (file:line) fails.
docs: deps-docs
	@out=$$(ldoc . 2>&1); echo "$$out"; \
	if echo "$$out" | grep -q ':[0-9][0-9]*: '; then echo "make docs: LDoc warnings above"; exit 1; fi

clean:
	rm -rf $(BUILD)

# ---- benchmark (issue 5; bench/README.md) ----------------------------------
# `make bench`: the full run (C harness vs lunatls, LuaSec and cqueues over
# loopback TCP, memory per connection, callgrind instruction counts): a few
# minutes. It installs the packages it alone needs (scripts/deps.sh bench);
# `make test` never installs them. `make bench-smoke`: a few
# iterations of everything but callgrind, in about a second; `make test` runs
# it through spec/90-bench_smoke_spec.lua so the benchmark cannot rot.
# BENCH_ARGS passes options to bench/run.lua (e.g. BENCH_ARGS=--rounds=11).
# Its packages: scripts/deps.sh bench.
BENCH_HARNESS  = $(BUILD)/bench/harness
BENCH_ARGS    ?=

.PHONY: bench bench-smoke bench-harness bench-connections

bench-harness: $(BENCH_HARNESS)

$(BENCH_HARNESS): bench/harness.c Makefile
	@mkdir -p $(dir $@)
	$(CC) $(WARNINGS) $(CFLAGS) -o $@ bench/harness.c $(LDFLAGS) $(LIBS)

bench: deps-bench all bench-harness
	$(LUA) bench/run.lua $(BENCH_ARGS)
	$(MAKE) --no-print-directory bench-connections

# 10,000 concurrent connections per event loop, handshakes/s at 1 to 10,000
# (issue 10; bench/connections.lua, about 5 minutes). The soft descriptor
# limit is raised to the hard one first: pure Lua cannot do it.
bench-connections: all
	ulimit -n $$(ulimit -Hn) && $(LUA) bench/connections.lua $(CONN_ARGS)

bench-smoke: all bench-harness
	$(LUA) bench/run.lua --smoke

# ---- robustness (issue 4; docs/robustness.md, fuzz/README.md) ---------------
# `make asan`: the module built with AddressSanitizer + UndefinedBehaviorSanitizer
# (gcc), and the whole busted suite run with it. Debian's lua5.4 is not
# instrumented, so libasan is preloaded (the plain build too: the Lua
# programs some specs start run on it); fuzz/unpreload.c then takes
# LD_PRELOAD out of the environment, so the real peers the specs spawn
# (openssl, gnutls-cli, curl) run plain and LeakSanitizer checks lua5.4 only.
# `make valgrind`: the suite under memcheck; fails on any error or on a single
# byte definitely or indirectly lost (about 3.5 minutes). `make gcstress`: the
# suite with the collector at its most aggressive and a full collection after
# every test (spec/helpers/robust.lua).
# `make robust` runs asan, valgrind and gcstress (.ci/run does, after make
# test). Each sets LUNATLS_SANITIZER=asan|valgrind|gcstress: a spec
# that cannot run under one says so by skipping on it, explicitly.
# `make fuzz`: every libFuzzer target (clang) for FUZZ_TIME seconds each, on
# fuzz/corpus/<target>; `make fuzz-smoke`: each target over its stored corpus
# and regressions, then FUZZ_SMOKE_TIME seconds of fuzzing (make test runs it
# through spec/34-fuzz-smoke_spec.lua). `--ignore-lua` stops busted from
# re-executing itself (.busted names lua5.4), which would escape valgrind.
# Packages: scripts/deps.sh robust (make test itself runs the fuzz smoke,
# clang's libFuzzer, and make oom, gcc's ASan: scripts/deps.sh test has them).
SAN_CC        ?= gcc
SAN_BUILD      = $(BUILD)/asan
SAN_MODULE     = $(SAN_BUILD)/lunatls/core.so
SAN_FLAGS      = -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
                 -fno-sanitize-recover=all
SAN_PRELOAD    = $$($(SAN_CC) -print-file-name=libasan.so):$$($(SAN_CC) -print-file-name=libubsan.so):$(SAN_BUILD)/unpreload.so
SAN_ENV        = ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:detect_stack_use_after_return=1 \
                 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
ROBUST_BUSTED  = $(LUA) /usr/bin/busted --ignore-lua -o plainTerminal
VALGRIND       = valgrind -q --error-exitcode=1 --leak-check=full \
                 --errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect \
                 --suppressions=fuzz/valgrind.supp
FUZZ_TARGETS   = client server api
FUZZ_BUILD     = $(BUILD)/fuzz
FUZZ_TIME     ?= 600
FUZZ_RUNS     ?=
# FUZZ_RUNS=N: N executions per target instead of FUZZ_TIME seconds
FUZZ_LIMIT     = $(if $(FUZZ_RUNS),-runs=$(FUZZ_RUNS),-max_total_time=$(FUZZ_TIME))
FUZZ_SMOKE_TIME ?= 5
FUZZ_CFLAGS    = $(WARNINGS) -g -O1 -fsanitize=fuzzer,address,undefined \
                 -fno-sanitize-recover=all -I$(LUA_INC) \
                 -DFUZZ_DIR='"$(CURDIR)/fuzz"' -DFIXTURES_DIR='"$(CURDIR)/spec/fixtures/"'

LUA_LIB       ?= -llua5.4
OOM_BIN        = $(BUILD)/oom

.PHONY: robust ci-robust asan valgrind gcstress fuzz fuzz-build fuzz-smoke oom

$(SAN_MODULE): $(SOURCES) $(HEADERS) Makefile
	@mkdir -p $(dir $@)
	$(SAN_CC) $(ALL_CFLAGS) $(SAN_FLAGS) -shared -o $@ $(SOURCES) $(LDFLAGS) $(LIBS)

$(SAN_BUILD)/unpreload.so: fuzz/unpreload.c
	@mkdir -p $(dir $@)
	$(SAN_CC) $(WARNINGS) -O2 -fPIC -shared -o $@ fuzz/unpreload.c

asan: deps-robust all $(SAN_MODULE) $(SAN_BUILD)/unpreload.so $(LOOPBACK_SHIM)
	LUNATLS_SANITIZER=asan LUNATLS_EXPECT_MODULE=$(SAN_MODULE) $(SAN_ENV) \
	  LD_PRELOAD="$(SAN_PRELOAD)" $(ROBUST_BUSTED) --cpath='$(SAN_BUILD)/?.so' \
	  --helper=spec/helpers/robust.lua

# Under memcheck everything runs 20 to 50 times slower. Two tests whose own
# wall-clock deadlines cannot hold then are left out by name: the 7-byte-pipe
# write-retry stream test and the 200 clients fed one byte at a time. busted
# closes the Lua state at exit, so every object the suite made is finalized
# and anything not freed then counts as lost.
VALGRIND_SKIP    = --filter-out="write%-retry rule" --filter-out="arrive one byte at a time"

valgrind: deps-robust all $(LOOPBACK_SHIM)
	LUNATLS_SANITIZER=valgrind LUNATLS_EXPECT_MODULE=$(MODULE) \
	  $(VALGRIND) $(ROBUST_BUSTED) --helper=spec/helpers/robust.lua $(VALGRIND_SKIP) $(ROBUST_SPECS)

# Under gcstress Lua-heavy code runs 10 to 30 times slower: a test whose own
# per-operation deadline cannot hold then is left out here, by name (it runs
# in make test, asan and valgrind): the 7-byte-pipe write-retry stream test
# (10 s per operation; 0.3 s normally, 9 s under gcstress alone).
GCSTRESS_SKIP = --filter-out="write%-retry rule"

gcstress: deps-test all $(LOOPBACK_SHIM)
	LUNATLS_SANITIZER=gcstress LUNATLS_EXPECT_MODULE=$(MODULE) \
	  $(ROBUST_BUSTED) --helper=spec/helpers/robust.lua $(GCSTRESS_SKIP) $(ROBUST_SPECS)

robust: asan valgrind gcstress

# `make ci-robust`, what .ci/run runs (CI must stay well under 20 minutes; the
# whole of make robust takes about 25 on 2 cores): the whole suite under
# ASan+UBSan, and under valgrind and gcstress the specs that drive the C
# core directly, the scheduler's backends and the fuzz regressions
# (ROBUST_CORE_SPECS). ROBUST_SPECS=<spec files> narrows valgrind or gcstress
# the same way by hand.
ROBUST_SPECS      ?=
ROBUST_CORE_SPECS  = spec/0[1-9]-*_spec.lua spec/24-scheduler_spec.lua \
                     spec/3[0-3]-*_spec.lua spec/5[0-2]-*_spec.lua
# valgrind and gcstress run side by side, one per core (each is one busted
# process; their tests' bounds are already those of a run 10 to 50 times
# slower); --output-sync prints each run's output whole when it ends.
ci-robust: asan
	$(MAKE) --no-print-directory -j2 --output-sync=target valgrind gcstress \
	  ROBUST_SPECS="$(ROBUST_CORE_SPECS)"

# `make oom`: every allocation of every call that can reach OpenSSL, failed
# in turn (fuzz/oom.c), under ASan and LeakSanitizer: the module must raise
# "not enough memory", leak nothing and stay usable (but for a read or write
# that had moved bytes: its connection fails, code "memory"). make test runs
# it (spec/34-fuzz-smoke_spec.lua).
$(OOM_BIN): fuzz/oom.c $(SOURCES) $(HEADERS) Makefile
	@mkdir -p $(dir $@)
	$(SAN_CC) $(WARNINGS) $(SAN_FLAGS) -I$(LUA_INC) -DFUZZ_DIR='"$(CURDIR)/fuzz"' \
	  -o $@ fuzz/oom.c $(SOURCES) $(LUA_LIB) $(LIBS)

oom: $(OOM_BIN)
	$(SAN_ENV) $(OOM_BIN)

$(FUZZ_BUILD)/%: fuzz/harness.c $(SOURCES) $(HEADERS) Makefile
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -DFUZZ_TARGET='"$*"' -o $@ fuzz/harness.c $(SOURCES) \
	  $(LUA_LIB) $(LIBS)

fuzz-build: $(addprefix $(FUZZ_BUILD)/,$(FUZZ_TARGETS))

# Each target in turn, for FUZZ_TIME seconds (or FUZZ_RUNS executions); new
# inputs go into the corpus. libFuzzer's per-input leak check is off: the
# contexts' session caches and the BIO pairs' ring cache rightly outlive an
# input, so libFuzzer took almost every input for a possible leak and re-ran
# it under LeakSanitizer (api: about 20 instead of 150+ executions a second).
# Leaks are LeakSanitizer's at exit here, and make asan's, make valgrind's and
# make oom's over the suite, the corpus and the regressions.
FUZZ_FLAGS     = -detect_leaks=0 -print_final_stats=1
fuzz: deps-robust
	$(MAKE) fuzz-build
	for t in $(FUZZ_TARGETS); do \
	  mkdir -p fuzz/corpus/$$t fuzz/regressions/$$t; \
	  $(FUZZ_BUILD)/$$t $(FUZZ_LIMIT) $(FUZZ_FLAGS) \
	    -artifact_prefix=fuzz/regressions/$$t/ fuzz/corpus/$$t || exit 1; \
	done

# The stored corpus and regressions once each, then a short run that adds
# to a scratch directory (the stored corpus is not touched); a crash it finds
# is kept in $(FUZZ_BUILD)/artifacts/<target>/.
fuzz-smoke: fuzz-build
	for t in $(FUZZ_TARGETS); do \
	  mkdir -p fuzz/regressions/$$t $(FUZZ_BUILD)/artifacts/$$t && \
	  scratch=$$(mktemp -d) && \
	  $(FUZZ_BUILD)/$$t -runs=0 fuzz/corpus/$$t fuzz/regressions/$$t && \
	  $(FUZZ_BUILD)/$$t -max_total_time=$(FUZZ_SMOKE_TIME) -print_final_stats=1 \
	    -artifact_prefix=$(FUZZ_BUILD)/artifacts/$$t/ $$scratch fuzz/corpus/$$t; \
	  rc=$$?; rm -rf $$scratch; [ $$rc = 0 ] || exit 1; \
	done

# ---- release (issue 12) ---------------------------------------------------------
# `make dist`: offline, from the files git tracks in this tree (edits
# included): build/dist/lunatls-$(VERSION).tar.gz (reproducible: sorted, fixed
# owner and date) and lunatls-$(VERSION)-1.src.rock (that tarball and the
# rockspec, zipped, as `luarocks pack` makes it). `make rock-check`: lints both
# rockspecs, then `luarocks make`, `luarocks install` of the .src.rock and
# `luarocks remove` into a scratch tree (scripts/rock-check.sh).
DIST      = $(BUILD)/dist
DIST_NAME = lunatls-$(VERSION)
ROCKSPEC  = rockspec/lunatls-$(VERSION)-1.rockspec
TARBALL   = $(DIST)/$(DIST_NAME).tar.gz
SRC_ROCK  = $(DIST)/lunatls-$(VERSION)-1.src.rock

.PHONY: dist rock-check

dist: deps-dist
	@mkdir -p $(DIST)
	@grep -q '^version = "$(VERSION)-1"' $(ROCKSPEC) || { echo "$(ROCKSPEC): version is not $(VERSION)-1"; exit 1; }
	git ls-files -z | tar --null -T - --sort=name --owner=0 --group=0 --numeric-owner \
	  --mtime="$$(git log -1 --format=%cI)" --transform 's,^,$(DIST_NAME)/,' -cf - | gzip -n > $(TARBALL)
	rm -f $(SRC_ROCK)
	cp $(ROCKSPEC) $(DIST)/
	cd $(DIST) && zip -q -X $(notdir $(SRC_ROCK)) $(notdir $(ROCKSPEC)) $(notdir $(TARBALL))
	@echo "built $(TARBALL) and $(SRC_ROCK)"

rock-check: dist
	sh scripts/rock-check.sh $(ROCKSPEC) $(SRC_ROCK)
