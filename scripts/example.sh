#!/usr/bin/env bash
# Sets up the machine (scripts/setup.sh), builds imagesmith and the packages of pkg/ into
# local images, then builds examples/minimal.yml into out/minimal.tar (and, for booting,
# out/minimal-kernel, out/minimal-initrd.img, out/minimal-cmdline). See README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release
bin=target/release/imagesmith
"$bin" pkg build pkg/kernel pkg/init pkg/runc pkg/hello
mkdir -p out
"$bin" build examples/minimal.yml -o out/minimal.tar
"$bin" build -f kernel+initrd --dir out examples/minimal.yml
ls -l out
