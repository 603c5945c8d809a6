#!/usr/bin/env bash
# Sets up the machine (scripts/setup.sh) and runs the whole test suite against the real
# Docker engine. Tests that need the engine fail, never skip, when it cannot be reached.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash ../shared/golden/make-images.sh
export IMAGESMITH_REQUIRE_ENGINE=1
cargo build --release --quiet
cargo test --no-fail-fast "$@"
