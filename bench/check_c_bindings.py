#!/usr/bin/env python3
"""Checks bench/ptxattn_c.py (ctypes bindings of the C API) against libptxattn.so, without a GPU.

Each struct is filled by the library's _init (which refuses a layout other
than its own), its defaults are read back where ptxattn.h puts them, a W2
batch goes through the host-only validation, valid and with one bad page
index, and the refusals of kv_splits and kv_block come back (the plan
refuses before any CUDA call). Usage: python3 bench/check_c_bindings.py build/libptxattn.so
Prints one line per failed check and exits 1 if any failed.
"""

import ctypes
import os
import re
import sys

import ptxattn_c

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main(path):
    c = ptxattn_c.Library(path)
    failures = []

    def expect(ok, what):
        if not ok:
            failures.append(what)

    header = open(os.path.join(REPO, "include", "ptxattn", "ptxattn.h")).read()
    version = re.search(r'#define PTXATTN_VERSION_STRING "([^"]*)"', header).group(1)
    expect(c.lib.ptxattn_version_string().decode() == version,
           f"library version {c.lib.ptxattn_version_string().decode()} is not the header's {version}")

    config = c.new(ptxattn_c.PrefillConfig)
    expect(config.struct_size == ctypes.sizeof(ptxattn_c.PrefillConfig), "PrefillConfig.struct_size")
    expect(config.options.window_left == -1, f"default window_left {config.options.window_left}, not -1")
    expect(config.kv_format == ptxattn_c.PTXATTN_KV_FORMAT_PAGED and config.max_ctas == 0 and
           config.kv_block == ptxattn_c.PTXATTN_KV_BLOCK_AUTO and config.kv_splits == 0,
           "defaults of kv_format / max_ctas / kv_block / kv_splits")
    for cls in ptxattn_c.INIT_NAMES:
        expect(c.new(cls).struct_size == ctypes.sizeof(cls), f"{cls.__name__}.struct_size")

    # W2's heads and page size 16 (docs/benchmarks.md), two requests.
    config.num_qo_heads, config.num_kv_heads, config.head_dim = 32, 8, 128
    config.page_size, config.num_pages = 16, 8
    config.options.causal = 1
    qo_indptr = ptxattn_c.int32_array([0, 20, 29])
    kv_indptr = ptxattn_c.int32_array([0, 3, 4])
    last_page_len = ptxattn_c.int32_array([5, 16])
    for pages, bad in (([5, 2, 7, 0], None), ([5, 2, 8, 0], "kv_indices[2] = 8")):
        indices = c.batch_indices(2, qo_indptr, kv_indptr, ptxattn_c.int32_array(pages), last_page_len)
        try:
            c.check(c.lib.ptxattn_validate_prefill_config(ctypes.byref(config)), "validate_prefill_config")
            c.check(c.lib.ptxattn_validate_batch_indices(ctypes.byref(config), ctypes.byref(indices)),
                    "validate_batch_indices")
            expect(bad is None, f"page {pages} accepted")
        except ptxattn_c.PtxattnError as e:
            expect(bad is not None and bad in str(e), f"pages {pages}: {e}")

    # kv_splits, the last field, reaches the library.
    config.kv_splits = 65
    status = c.lib.ptxattn_validate_prefill_config(ctypes.byref(config))
    expect(b"config.kv_splits = 65 is outside [0, 64]" in c.lib.ptxattn_last_error_message(),
           f"kv_splits 65: status {status}, {c.lib.ptxattn_last_error_message()}")
    config.kv_splits = 0

    # kv_block reaches the library: outside its enum, and the wide block forced on pages.
    config.kv_block = 3
    status = c.lib.ptxattn_validate_prefill_config(ctypes.byref(config))
    expect(b"config.kv_block = 3 is not a KvBlock" in c.lib.ptxattn_last_error_message(),
           f"kv_block 3: status {status}, {c.lib.ptxattn_last_error_message()}")
    config.kv_block = ptxattn_c.PTXATTN_KV_BLOCK_WIDE
    indices = c.batch_indices(2, qo_indptr, kv_indptr, ptxattn_c.int32_array([5, 2, 7, 0]), last_page_len)
    plan = ctypes.c_void_p()
    c.check(c.lib.ptxattn_prefill_plan_create(ctypes.byref(plan)), "plan_create")
    status = c.lib.ptxattn_plan_prefill(plan, ctypes.byref(config), ctypes.byref(indices))
    c.lib.ptxattn_prefill_plan_destroy(plan)
    expect(b"kv_block = kWide" in c.lib.ptxattn_last_error_message(),
           f"kv_block wide on pages: status {status}, {c.lib.ptxattn_last_error_message()}")

    # A struct of another layout is refused by _init, which writes nothing then.
    status = c.lib.ptxattn_prefill_config_init(ctypes.byref(config), ctypes.sizeof(config) - 4)
    expect(status != ptxattn_c.PTXATTN_STATUS_OK and b"struct_size" in c.lib.ptxattn_last_error_message(),
           "an _init with another struct_size was not refused")

    for failure in failures:
        print(f"check_c_bindings: FAILED: {failure}")
    print(f"check_c_bindings: {'ok' if not failures else f'{len(failures)} failed'} ({path})")
    return 1 if failures else 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1]))
