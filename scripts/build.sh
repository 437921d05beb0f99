#!/usr/bin/env bash
# Configures ptxattn (or reconfigures an existing build dir, so that
# MESON_OPTIONS and BUILDTYPE always apply) and builds it with ninja.
#   scripts/build.sh [ninja targets...]
# The tests, the validator and the benchmarks are enabled (-Dtests=enabled
# -Dbench=enabled -Dvalidator=enabled), so a missing Eigen, Catch2 or Google
# Benchmark is a configure error, not a quietly smaller build; MESON_OPTIONS
# comes after them and may override them (meson keeps the last -D of an
# option).
# Environment: BUILD_DIR (default <repo>/build-release), BUILDTYPE (release),
# JOBS (parallel compiles, default nproc), MESON_OPTIONS (extra -D... options).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${BUILD_DIR:-$repo/build-release}
command -v nvcc >/dev/null || export PATH="$PATH:/usr/local/cuda/bin"

options=(--buildtype="${BUILDTYPE:-release}" -Dtests=enabled -Dbench=enabled -Dvalidator=enabled)
# shellcheck disable=SC2086  # MESON_OPTIONS is a list of options
if [ -f "$build/build.ninja" ]; then
  meson setup --reconfigure "$build" "$repo" "${options[@]}" ${MESON_OPTIONS:-}
else
  meson setup "$build" "$repo" "${options[@]}" ${MESON_OPTIONS:-}
fi
ninja -C "$build" -j "${JOBS:-$(nproc)}" "$@"
