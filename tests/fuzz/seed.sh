#!/usr/bin/env bash
# Regenerates the seed corpora tests/fuzz/corpus/NAME/ from the shared sample data
# (../shared/vectors), tests/data and the shared captures (../shared/captures-ext; only small
# cuts and extracted packets are written, never whole captures). Runs on stable.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo test --locked --test fuzz_smoke -- --ignored --exact regenerate_seeds --nocapture
du -sh tests/fuzz/corpus
