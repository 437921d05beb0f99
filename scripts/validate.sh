#!/usr/bin/env bash
# Builds ptxattn (release) and runs the validator's quick preset: every kernel
# against the CPU reference on the standard shapes. Needs an SM90 GPU.
#   scripts/validate.sh [more ptxattn-validate arguments...]
# Environment: as scripts/build.sh.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${BUILD_DIR:-$repo/build-release}
"$repo/scripts/build.sh" ptxattn-validate
exec "$build/ptxattn-validate" --preset quick "$@"
