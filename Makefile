# cellpay — the two commands of the quick start are `make start` and `make test`.
# CMake does the building underneath; this file names the steps.

BUILD ?= build
JOBS ?= $(shell nproc)

.PHONY: all deps build start test test-fast asan fuzz bench format clean

all: build

deps:
	@bash scripts/deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j$(JOBS)

# Installs what is missing, builds, and runs the embedded default.
start: build
	./$(BUILD)/cellpay start

# The whole test suite: release build, ASan+UBSan build, and short fuzz runs.
test: deps
	@bash scripts/test.sh

# Only the release build's tests (quicker while working).
test-fast: build
	@cd $(BUILD) && ctest --output-on-failure -j$(JOBS)

bench: build
	./$(BUILD)/cellpay bench ledger

format:
	@clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build build-asan build-fuzz
