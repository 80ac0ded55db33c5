# The two commands of the quick start: `make run` and `make test`.
# Both install what is missing from Debian first (as root; otherwise they print the apt-get line).

PACKAGES := build-essential cmake pkg-config libzmq3-dev libprotobuf-c-dev protobuf-c-compiler \
            libuv1-dev libsqlite3-dev libcriterion-dev libsystemd-dev libjansson-dev \
            libconfig-dev libicu-dev libmicrohttpd-dev libssl-dev libcurl4-openssl-dev \
            libsodium-dev chromium nodejs
CONFIG   ?= examples/funneld.conf
JOBS     ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: all deps deps-npm build run run-web test test-stress fuzz bench bench-workload format clean

all: build

# $(call apt_install,PACKAGES) installs those of PACKAGES that are missing, as root; otherwise
# it prints the apt-get line and fails. dpkg-query answers "install ok installed" only for
# packages that really are there.
define apt_install
@missing=""; for p in $(1); do \
  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
done; \
if [ -n "$$missing" ]; then \
  if [ "$$(id -u)" = 0 ]; then \
    echo "installing:$$missing"; \
    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $$missing || exit 1; \
  else \
    echo "missing Debian packages; run as root:"; \
    echo "  apt-get update && apt-get install -y$$missing"; exit 1; \
  fi; \
fi
endef

# The browser tests' playwright-core, pinned in tests/browser/package-lock.json; npm ci runs
# again only when the lock file changed. Node's own npm when it has one, Debian's otherwise.
deps:
	$(call apt_install,$(PACKAGES))
	@command -v npm >/dev/null 2>&1 || $(MAKE) --no-print-directory deps-npm
	@if [ ! -f tests/browser/node_modules/.package-lock.json ] || \
	    [ tests/browser/package-lock.json -nt tests/browser/node_modules/.package-lock.json ]; then \
	  cd tests/browser && npm ci --no-audit --no-fund; \
	fi

deps-npm:
	$(call apt_install,npm)

build: deps
	cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo
	cmake --build build -j $(JOBS)

run: build
	mkdir -p var
	./build/funneld --config $(CONFIG)

# funneld and funnel-web side by side: the page on http://127.0.0.1:8080/ (README "funnel-web").
# Create the first user before: ./build/funnel-web --config examples/funnel-web.conf
# --add-user NAME --role admin (password on stdin). Ctrl-C stops both.
WEB_CONFIG ?= examples/funnel-web.conf
run-web: build
	mkdir -p var
	rm -f var/funneld.ready
	@./build/funneld --config $(CONFIG) --ready-file var/funneld.ready & fpid=$$!; \
	trap 'kill $$fpid 2>/dev/null; wait $$fpid' EXIT INT TERM; \
	for i in $$(seq 100); do [ -f var/funneld.ready ] && break; sleep 0.1; done; \
	./build/funnel-web --config $(WEB_CONFIG)

# The test build is separate so that `make run` stays fast and `make test` always has
# -Werror plus AddressSanitizer and UndefinedBehaviorSanitizer.
test: deps
	cmake -S . -B build-test -DCMAKE_BUILD_TYPE=Debug -DFUNNEL_SANITIZE=ON
	cmake --build build-test -j $(JOBS)
	cd build-test && ctest --output-on-failure -j $(JOBS)

# The suite three times in a row beside two CPU hogs: a test that leans on timing an idle
# machine gives fails here. The hogs are killed on every exit, a failed run or ^C included.
test-stress: deps
	cmake -S . -B build-test -DCMAKE_BUILD_TYPE=Debug -DFUNNEL_SANITIZE=ON
	cmake --build build-test -j $(JOBS)
	@sh -c 'while :; do :; done' & h1=$$!; \
	sh -c 'while :; do :; done' & h2=$$!; \
	trap 'kill $$h1 $$h2 2>/dev/null' EXIT; trap 'exit 130' INT TERM; \
	for i in 1 2 3; do \
	  echo "test-stress: run $$i of 3, beside two CPU hogs"; \
	  (cd build-test && ctest --output-on-failure -j $(JOBS)) || exit 1; \
	done

# libFuzzer on every harness of tests/fuzz (see README "Fuzzing"): a clang build in build-fuzz/,
# then each harness for FUZZ_SECONDS from its seed corpus. New inputs go to a scratch corpus in
# build-fuzz/corpus/NAME (the seeds in the repository are only read); crashes are written to
# build-fuzz/artifacts/ and stop the run.
FUZZ_SECONDS ?= 60
FUZZ_PACKAGES := clang libclang-rt-dev
FUZZERS      := $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))

fuzz: deps
	$(call apt_install,$(FUZZ_PACKAGES))
	CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DFUNNEL_FUZZ=ON
	cmake --build build-fuzz -j $(JOBS) --target $(addprefix fuzz_,$(FUZZERS))
	mkdir -p build-fuzz/artifacts
	for f in $(FUZZERS); do \
	  mkdir -p build-fuzz/corpus/$$f && \
	  ./build-fuzz/fuzz_$$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	    -artifact_prefix=build-fuzz/artifacts/$$f- build-fuzz/corpus/$$f tests/fuzz/corpus/$$f \
	    </dev/null || exit 1; \
	done

LEADS    ?= 1000000
SEED     ?= 1

# bench_ingest (one event kind, raw limits) then bench_workload (a year of a realistic funnel;
# LEADS=20000 for a quick look, the targets are set for the default 1,000,000).
bench: build
	./build/bench_ingest
	./build/bench_workload --leads $(LEADS) --seed $(SEED)

bench-workload: build
	./build/bench_workload --leads $(LEADS) --seed $(SEED)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build build-test build-fuzz
