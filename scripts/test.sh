#!/usr/bin/env bash
# Sets up the machine (scripts/setup.sh: packages and a Docker engine) and runs the whole
# test suite against it. Tests that need the engine fail, never skip, when it cannot be
# reached. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo test --no-fail-fast "$@"
