# The block loops of every prefill kernel in a library or object file: for each backward branch whose body
# holds wgmma (HGMMA), the body's length and its R2UR and UIADD3 counts. UIADD3 in the loop means the ring
# stage arithmetic runs in uniform registers; R2UR counts moves from per-thread to uniform registers.
# Needs cuobjdump and nvdisasm on PATH. Usage: python3 sass_loops.py libptxattn.so
import collections, re, subprocess, sys

sass = subprocess.run(["cuobjdump", "-sass", sys.argv[1]], capture_output=True, text=True, check=True).stdout
kernels, current = {}, None
for line in sass.splitlines():
    if "Function :" in line:
        m = re.search(r"PrefillTraitsILi(\d+)ELNS_3ptx7MmaTypeE(\d)ELNS0_8LoadPathE(\d)ELi(\d+)ELb(\d)", line)
        current = None
        if m and "prefill_kernel" in line:
            hd, dtype, path, block, dyn = m.groups()
            current = f"hd{hd} {('bf16', 'fp16')[int(dtype)]} {('tma', 'gather')[int(path)]} block {block} " \
                      f"{('static', 'dynamic')[int(dyn)]}"
            kernels[current] = []
        continue
    m = re.match(r"\s*/\*([0-9a-f]{4,})\*/\s+(.*?);", line)
    if m and current:
        kernels[current].append((int(m.group(1), 16), m.group(2).strip()))

opcode = lambda ins: re.sub(r"^@!?U?P\w+\s+", "", ins).split()[0]
for name, code in sorted(kernels.items()):
    at = {address: i for i, (address, _) in enumerate(code)}
    loops = []
    for i, (address, ins) in enumerate(code):
        m = re.search(r"BRA.*0x([0-9a-f]+)", ins)
        if m and int(m.group(1), 16) < address:
            body = code[at[int(m.group(1), 16)]:i + 1]
            wgmma = sum("HGMMA" in x for _, x in body)
            if wgmma and len(body) < 4000:
                counts = collections.Counter(opcode(x) for _, x in body)
                loops.append(f"{len(body)} instr / {wgmma} HGMMA / {counts['R2UR']} R2UR / {counts['UIADD3']} UIADD3")
    print(f"{name}: " + "; ".join(loops[:4]))
