# copper — the two commands of the README, and a few more.
#   make demo   install what is missing, build the copper program (Release), run the main demonstration
#   make test   install what is missing, build (Release), run the whole test suite
BUILD    ?= build
JOBS     ?= $(shell nproc)
CMAKE_FLAGS ?=
# Unity build: CMake compiles each library's sources in batches of 8 as one translation unit,
# so that the heavy headers (CLI11, nlohmann/json, fmt, the standard library) are parsed once
# per batch instead of once per file: a fresh build takes well under half the time. UNITY=OFF
# compiles file by file, which suits edit-rebuild cycles (a change rebuilds one file, not its
# batch).
UNITY ?= ON
# Ninja when the build folder is new (it overlaps the libraries' compiles with their users'; a
# folder configured before keeps its generator).
GENERATOR := $(if $(wildcard $(BUILD)/CMakeCache.txt),,-G Ninja)

.PHONY: all setup configure build demo test sanitize bench clean

all: build

setup:
	@bash scripts/setup.sh

configure: setup
	@cmake -S . -B $(BUILD) $(GENERATOR) -DCMAKE_BUILD_TYPE=Release -DCMAKE_UNITY_BUILD=$(UNITY) $(CMAKE_FLAGS) > $(BUILD).configure.log 2>&1 || (cat $(BUILD).configure.log; exit 1)

build: configure
	@cmake --build $(BUILD) -j $(JOBS)

# The demo builds only the program it runs (not the test suite), quietly: the compiler's
# output goes to $(BUILD)/demo-build.log and is shown only if the build fails.
demo: configure
	@echo "building copper (first time: a few minutes; log in $(BUILD)/demo-build.log)..."
	@cmake --build $(BUILD) -j $(JOBS) --target copper > $(BUILD)/demo-build.log 2>&1 || \
		(tail -n 40 $(BUILD)/demo-build.log; echo "make demo: the build failed; the whole log is $(BUILD)/demo-build.log" >&2; exit 1)
	@$(BUILD)/bin/copper demo

test: build
	@ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS)

# AddressSanitizer + UndefinedBehaviorSanitizer build of the same suite.
sanitize: setup
	@cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DCOPPER_SANITIZE=ON > build-asan.configure.log 2>&1 || (cat build-asan.configure.log; exit 1)
	@cmake --build build-asan -j $(JOBS)
	@ASAN_OPTIONS=detect_leaks=1 ctest --test-dir build-asan --output-on-failure -j $(JOBS)

bench: build
	@$(BUILD)/bin/copper bench ops

clean:
	rm -rf $(BUILD) build-asan *.configure.log
