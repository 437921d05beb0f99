#!/usr/bin/env bash
# Configures ptxattn (or reconfigures an existing build dir, so that
# MESON_OPTIONS and BUILDTYPE always apply) and builds it with ninja.
#   scripts/build.sh [ninja targets...]
# Environment: BUILD_DIR (default <repo>/build-release), BUILDTYPE (release),
# JOBS (parallel compiles, default nproc), MESON_OPTIONS (extra -D... options).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${BUILD_DIR:-$repo/build-release}
command -v nvcc >/dev/null || export PATH="$PATH:/usr/local/cuda/bin"

# shellcheck disable=SC2086  # MESON_OPTIONS is a list of options
if [ -f "$build/build.ninja" ]; then
  meson setup --reconfigure "$build" "$repo" --buildtype="${BUILDTYPE:-release}" ${MESON_OPTIONS:-}
else
  meson setup "$build" "$repo" --buildtype="${BUILDTYPE:-release}" ${MESON_OPTIONS:-}
fi
ninja -C "$build" -j "${JOBS:-$(nproc)}" "$@"
