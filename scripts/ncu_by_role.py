#!/usr/bin/env python3
"""Splits an ncu per-instruction export of a prefill kernel by warp role.

Input: `ncu -i report.ncu-rep --page source --csv --print-source sass > k.csv`
(a report taken with --import-source yes and the SourceCounters and
WarpStateStats sections). The kernel's roles are the two branches after
__syncthreads: the producer's begins at its setmaxnreg decrease
(USETMAXREG.DEALLOC), the consumers' at the increase (USETMAXREG.TRY_ALLOC);
instructions in address order are credited to the role whose marker came last
("entry" before either). Prints, per role, the instructions executed, the
warp-stall samples with their main reasons, and the producer's most executed
opcodes.

    scripts/ncu_by_role.py k.csv [more.csv ...]
"""
import collections
import csv
import sys


def role_of(source, current):
    if 'SETMAXREG' not in source:
        return current
    return 'consumer' if 'TRY_ALLOC' in source else 'producer'


def number(text):
    return int(text) if text not in ('', '-') else 0


def summarise(path):
    rows = list(csv.reader(open(path)))
    header = rows[1]  # rows[0] names the kernel
    col = {name: i for i, name in enumerate(header)}
    reasons = [h for h in header if h.startswith('stall_') and 'Not Issued' not in h]
    role = 'entry'
    executed = collections.Counter()
    samples = collections.defaultdict(collections.Counter)
    opcodes = collections.defaultdict(collections.Counter)
    for row in rows[2:]:
        source = row[col['Source']].strip()
        role = role_of(source, role)
        count = number(row[col['Instructions Executed']])
        executed[role] += count
        words = source.split()
        if words:
            opcode = words[1] if words[0].startswith('@') and len(words) > 1 else words[0]
            opcodes[role][opcode.split('.')[0]] += count
        for reason in reasons:
            samples[role][reason[len('stall_'):]] += number(row[col[reason]])
    total = sum(executed.values())
    print(path)
    for role in ('entry', 'consumer', 'producer'):
        stalls = samples[role]
        stall_total = sum(stalls.values()) or 1
        top = ', '.join(f'{k} {100 * v / stall_total:.0f}%' for k, v in stalls.most_common(6))
        print(f'  {role:9s} instructions {executed[role]:12,d} ({100 * executed[role] / total:4.1f}%)'
              f'  stall samples {sum(stalls.values()):8,d}: {top}')
    print('  producer opcodes:', ', '.join(f'{k} {v:,}' for k, v in opcodes['producer'].most_common(10)))


if __name__ == '__main__':
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for arg in sys.argv[1:]:
        summarise(arg)
