# Per-SM classes of an item trace (trace.py's CSVs, xz-compressed here): each SM's mean duration of its
# first three items, the SMs split at 700 us, and per (class, items on the SM): mean start and duration by
# place on the SM, and end times. Usage: python3 trace_classes.py trace_persistent.csv.xz ...
import lzma, statistics as st, sys
for path in sys.argv[1:]:
    rows = [list(map(int, l.split(","))) for l in lzma.open(path, "rt").read().splitlines()[1:]]
    t0, t1 = min(r[3] for r in rows), max(r[4] for r in rows)
    by_sm = {}
    for r in rows:
        by_sm.setdefault(r[0], []).append(r)
    groups = {}
    for seq in by_sm.values():
        seq.sort(key=lambda r: r[3])
        d = [(r[4] - r[3]) / 1e3 for r in seq]
        key = ("fast" if st.mean(d[:3]) < 700 else "slow", len(seq))
        groups.setdefault(key, []).append(([(r[3] - t0) / 1e3 for r in seq], d, (seq[-1][4] - t0) / 1e3))
    print(path, "span us", (t1 - t0) / 1e3)
    for k, v in sorted(groups.items()):
        starts = [round(st.mean(x[0][i] for x in v)) for i in range(k[1])]
        durs = [round(st.mean(x[1][i] for x in v)) for i in range(k[1])]
        ends = [x[2] for x in v]
        print(f"  {k[0]} SMs with {k[1]} items: {len(v)}; start {starts}; duration {durs}; "
              f"end mean {st.mean(ends):.0f} min {min(ends):.0f} max {max(ends):.0f}")
