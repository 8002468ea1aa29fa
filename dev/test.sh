#!/usr/bin/env bash
# The test command: set up, then format check, lints and the whole test suite against real programs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash dev/setup.sh
cargo fmt --check
cargo clippy --all-targets -- -D warnings
cargo test --all-targets
