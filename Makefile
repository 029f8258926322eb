# Two commands on a fresh machine: `make test` and `make demo`. Both install what they need first.
.PHONY: all deps build typecheck lint test test-unit demo bench soak fuzz clean fmt

all: build

deps:
	@scripts/deps.sh

build: deps
	@npx --no-install tsc -p tsconfig.json
	@src/tunnel/native/build.sh

typecheck: build

lint: deps
	@npx --no-install biome check .

fmt: deps
	@npx --no-install biome check --write .

# typecheck (tsc), lint (biome), then every test with Node's built-in runner.
test: build lint
	@scripts/run-tests.sh

demo: build
	@bin/autotunnel demo

bench: build
	@scripts/run-bench.sh

# The long fault run (docs/soak.md): SOAK_SECONDS (default 600), SOAK_SEED, SOAK_REPORT (default soak-report.json).
soak: build
	@node dist/test/soak/main.js

# Coverage-guided fuzzing (Jazzer.js) of every network decoder, FUZZ_SECONDS (default 60) per target, one core;
# the corpus it grows under test/fuzz/corpus/ is replayed by `make test`. See test/fuzz/README.md.
fuzz: build
	@scripts/fuzz.sh

clean:
	rm -rf dist
