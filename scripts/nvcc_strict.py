#!/usr/bin/env python3
"""Compile one CUDA kernel source with nvcc and fail on ptxas performance advisories.

Usage: nvcc_strict.py [--report-only] NVCC [nvcc arguments ...]

-Xptxas=--warning-as-error already turns ptxas warnings (register spills with
--warn-on-spills) into errors, but ptxas reports serialized wgmma
("C75xx ... Potential Performance Loss: wgmma.mma_async instructions are
serialized ...") as an *info* line, which no ptxas or nvcc flag promotes.
This wrapper passes nvcc's output through unchanged and fails the compile when
such a line appears, deleting the object so the build stays dirty.
--report-only (injected-bug builds, meson.build) prints the advisories and
keeps the object.
"""
import os
import re
import subprocess
import sys

# ptxas (CUDA 12.x/13.0) prints these as "ptxas info : (C7510..C7520) Potential Performance Loss: ..."
FATAL_ADVISORY = re.compile(r"Potential Performance Loss|wgmma\S* instructions are serialized")


def output_path(args):
    for i, arg in enumerate(args):
        if arg == "-o" and i + 1 < len(args):
            return args[i + 1]
    return None


def main():
    if len(sys.argv) < 3:
        sys.stderr.write(__doc__)
        return 2
    report_only = sys.argv[1] == "--report-only"
    command = sys.argv[2:] if report_only else sys.argv[1:]
    proc = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sys.stdout.write(proc.stdout)
    if proc.returncode != 0:
        return proc.returncode
    advisories = [line for line in proc.stdout.splitlines() if FATAL_ADVISORY.search(line)]
    if not advisories:
        return 0
    if report_only:
        sys.stdout.write("nvcc_strict.py: ptxas performance advisories (kept: --report-only):\n")
        for line in advisories:
            sys.stdout.write("  " + line + "\n")
        return 0
    sys.stdout.write("nvcc_strict.py: ptxas reported a performance advisory that this project treats as an error:\n")
    for line in advisories:
        sys.stdout.write("  " + line + "\n")
    obj = output_path(command)
    if obj:
        try:
            os.remove(obj)
        except OSError:
            pass
    return 1


if __name__ == "__main__":
    sys.exit(main())
