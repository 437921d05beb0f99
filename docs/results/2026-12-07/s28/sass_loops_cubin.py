# block loops from nvdisasm output: python3 sassl.py dis.txt
import collections, re, sys
kernels, cur, labels, pending = {}, None, {}, []
for line in open(sys.argv[1]):
    m = re.match(r"^\.text\.(\S+):", line)
    if m:
        n = m.group(1); mm = re.search(r"PrefillTraitsILi(\d+)ELNS_3ptx7MmaTypeE(\d)ELNS0_8LoadPathE(\d)ELi(\d+)(?:ELb(\d))?(?:ELi(\d))?", n)
        cur = None
        if mm and "prefill_kernel" in n:
            hd, dt, path, blk, dyn, st = mm.groups()
            cur = f"hd{hd} {('bf16','fp16')[int(dt)]} {('tma','gather')[int(path)]} block {blk} {('static','dynamic')[int(dyn or 0)]} st{st or '-'}"
            kernels[cur] = ([], {})
        continue
    if cur is None: continue
    m = re.match(r"^(\.L_x_\d+):", line)
    if m: pending.append(m.group(1)); continue
    m = re.match(r"\s*/\*([0-9a-f]{4,})\*/\s+(.*?)\s*;", line)
    if m:
        a = int(m.group(1), 16); kernels[cur][0].append((a, m.group(2)))
        for l in pending: kernels[cur][1][l] = a
        pending = []
opcode = lambda ins: re.sub(r"^@!?U?P\w+\s+", "", ins).split()[0]
for name, (code, lab) in sorted(kernels.items()):
    at = {a: i for i, (a, _) in enumerate(code)}
    loops = []
    for i, (a, ins) in enumerate(code):
        m = re.search(r"BRA.*`\((\.L_x_\d+)\)", ins)
        if m and lab.get(m.group(1), 1 << 40) < a:
            body = code[at[lab[m.group(1)]]:i + 1]
            w = sum("HGMMA" in x for _, x in body)
            if w and len(body) < 4000:
                c = collections.Counter(opcode(x) for _, x in body)
                loops.append(f"{len(body)} instr/{w} HGMMA/{c['R2UR']} R2UR/{c['UIADD3']} UIADD3/{c['BAR']} BAR/{c['BSSY']} BSSY/{c['WARPSYNC']} WS")
    print(f"{name}: " + "; ".join(loops[:4]))
