# Two commands on a fresh machine: `make test` and `make demo`. Both install what they need first.
.PHONY: all deps deps-test build typecheck lint test test-unit demo bench soak fuzz clean fmt install uninstall \
	systemd-check

all: build

# What building and running need (scripts/deps.sh --runtime); deps-test adds the test peers and lab tools.
deps:
	@scripts/deps.sh --runtime

deps-test:
	@scripts/deps.sh --test

build: deps
	@npx --no-install tsc -p tsconfig.json
	@src/tunnel/native/build.sh

typecheck: build

lint: deps
	@npx --no-install biome check .

fmt: deps
	@npx --no-install biome check --write .

# typecheck (tsc), lint (biome), then every test with Node's built-in runner.
test: build deps-test lint
	@scripts/run-tests.sh

demo: build deps-test
	@bin/autotunnel demo

bench: build deps-test
	@scripts/run-bench.sh

# The long fault run (docs/soak.md): SOAK_SECONDS (default 600), SOAK_SEED, SOAK_REPORT (default soak-report.json).
soak: build deps-test
	@node dist/test/soak/main.js

# Coverage-guided fuzzing (Jazzer.js) of every network decoder, FUZZ_SECONDS (default 60) per target, one core;
# the corpus it grows under test/fuzz/corpus/ is replayed by `make test`. See test/fuzz/README.md.
fuzz: build
	@scripts/fuzz.sh

# Installs the built program to run (no test peers): PREFIX/lib/autotunnel and the command PREFIX/bin/autotunnel.
PREFIX ?= /usr/local
install: build
	@PREFIX="$(PREFIX)" DESTDIR="$(DESTDIR)" scripts/install.sh

uninstall:
	@PREFIX="$(PREFIX)" DESTDIR="$(DESTDIR)" scripts/install.sh --uninstall

# The install-service units under a real systemd (test/systemd/check.sh): boots Debian 12 with systemd-nspawn,
# runs the server and agent units there and checks them. Not part of `make test`: the first run debootstraps from
# the Debian mirror into /var/cache/autotunnel-systemd-root (AUTOTUNNEL_SYSTEMD_ROOT), later runs reuse it.
systemd-check: build
	@scripts/deps.sh --systemd-check
	@test/systemd/check.sh

clean:
	rm -rf dist
