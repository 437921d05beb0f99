#!/usr/bin/env python3
"""Where ptxas put the wait for the previous block's P V, per prefill kernel.

The consumers' steady state issues S(i) and P(i-1) V(i-1), waits for S(i)
(`WARPGROUP.DEPBAR.LE gsb0, 0x1`), runs the softmax of S(i) and only then
needs P(i-1) V(i-1) to have retired (`WARPGROUP.DEPBAR.LE gsb0, 0x0`). The
softmax overlaps that P V only if its exponentials (`MUFU.EX2`) come before
the second wait in the SASS; ptxas is free to move the wait up, and did
(docs/benchmarks.md, "2026-12-04, third session"). For each prefill kernel
this prints the exponentials between the S wait and the next P V wait
(overlapped; the soft-cap path's tanh adds its own) and those after it
before the next wgmma (not overlapped), and exits 1 if any kernel has an
exponential after the wait or no such pair of waits. On the kernels before
the fix: 64 before (the soft cap's), 66 after (the softmax's) at head_dim
128.

    scripts/sass_softmax_overlap.py build-release/libptxattn.so   (needs cuobjdump)
"""
import re
import subprocess
import sys


def kernels(sass):
    name, lines = None, []
    for line in sass.splitlines():
        m = re.search(r"Function : (\S+)", line)
        if m:
            if name and "prefill_kernel" in name:
                yield name, lines
            name, lines = m.group(1), []
        elif re.match(r"\s+/\*[0-9a-f]{4,5}\*/", line):
            lines.append(line.split(";")[0])
    if name and "prefill_kernel" in name:
        yield name, lines


def steady_state(lines):
    """(EX2 before, EX2 after) the P V wait, for the first S wait followed by a P V wait."""
    for i, line in enumerate(lines):
        if "DEPBAR.LE gsb0, 0x1" not in line:
            continue
        before = after = 0
        j = i + 1
        while j < len(lines) and "DEPBAR.LE gsb0, 0x0" not in lines[j]:
            before += "MUFU.EX2" in lines[j]
            j += 1
        k = j + 1
        while k < len(lines) and "HGMMA" not in lines[k] and "DEPBAR" not in lines[k]:
            after += "MUFU.EX2" in lines[k]
            k += 1
        return before, after
    return None


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sass = subprocess.run(["cuobjdump", "-sass", sys.argv[1]], check=True, capture_output=True, text=True).stdout
    bad = 0
    for name, lines in kernels(sass):
        m = re.search(r"PrefillTraitsILi(\d+)ELNS_3ptx7MmaTypeE(\d)ELNS0_8LoadPathE(\d)ELi(\d+)E", name)
        label = (f"head_dim {m.group(1)} {'bf16' if m.group(2) == '0' else 'fp16'} "
                 f"{'TMA' if m.group(3) == '0' else 'gather'} block {m.group(4)}") if m else name
        counts = steady_state(lines)
        if counts is None:  # the loop's shape changed: the check no longer knows what to look at
            print(f"{label}: no S wait followed by a P V wait found")
            bad += 1
            continue
        before, after = counts
        bad += after > 0
        print(f"{label}: {before} exponentials before the P V wait, {after} after it")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
