"""ctypes bindings of part of libptxattn.so's C API (include/ptxattn/ptxattn.h): prefill
plan and run, host-only validation, errors; what a ctypes caller declares, checked.

No torch here: bench/check_c_bindings.py checks these layouts against the
library on a machine without a GPU. Every struct is filled by its _init
function, which refuses a layout other than the library's, so a field added to
ptxattn.h and not here is an error, never a misread struct.
"""

import ctypes

PTXATTN_STATUS_OK = 0
PTXATTN_DTYPE_BF16 = 0
PTXATTN_KV_LAYOUT_NHD = 0
PTXATTN_KV_FORMAT_PAGED, PTXATTN_KV_FORMAT_RAGGED = 0, 1
PTXATTN_KV_BLOCK_AUTO, PTXATTN_KV_BLOCK_STANDARD, PTXATTN_KV_BLOCK_WIDE = 0, 1, 2
PTXATTN_GQA_PACKING_AUTO, PTXATTN_GQA_PACKING_OFF, PTXATTN_GQA_PACKING_ON = 0, 1, 2
I32P = ctypes.POINTER(ctypes.c_int32)


class PrefillOptions(ctypes.Structure):
    _fields_ = [("causal", ctypes.c_int32), ("window_left", ctypes.c_int32), ("logits_soft_cap", ctypes.c_float),
                ("sm_scale", ctypes.c_float), ("return_lse", ctypes.c_int32)]


class PrefillConfig(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_uint32), ("dtype", ctypes.c_int32), ("num_qo_heads", ctypes.c_int32),
                ("num_kv_heads", ctypes.c_int32), ("head_dim", ctypes.c_int32), ("kv_format", ctypes.c_int32),
                ("kv_layout", ctypes.c_int32), ("page_size", ctypes.c_int32), ("num_pages", ctypes.c_int32),
                ("options", PrefillOptions), ("load_path", ctypes.c_int32), ("schedule", ctypes.c_int32),
                ("max_ctas", ctypes.c_int32), ("kv_block", ctypes.c_int32), ("kv_splits", ctypes.c_int32),
                ("gqa_packing", ctypes.c_int32), ("kv_stages", ctypes.c_int32)]


class BatchIndices(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_uint32), ("num_requests", ctypes.c_int32), ("qo_indptr", I32P),
                ("kv_indptr", I32P), ("kv_indices", I32P), ("kv_last_page_len", I32P), ("kv_lens", I32P),
                ("block_table_stride", ctypes.c_int32)]


class PrefillTensors(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_uint32), ("q", ctypes.c_void_p), ("k", ctypes.c_void_p),
                ("v", ctypes.c_void_p), ("o", ctypes.c_void_p), ("lse", ctypes.c_void_p),
                ("num_q_tokens", ctypes.c_int64), ("num_kv_rows", ctypes.c_int64), ("kv_indices", I32P),
                ("q_row_stride", ctypes.c_int64), ("o_row_stride", ctypes.c_int64), ("kv_stride", ctypes.c_int64)]


# Each struct and the name of its _init function (ptxattn_<name>_init).
INIT_NAMES = {PrefillConfig: "prefill_config", BatchIndices: "batch_indices", PrefillTensors: "prefill_tensors"}


def int32_array(values):
    return (ctypes.c_int32 * max(1, len(values)))(*values)


class PtxattnError(Exception):
    """A C API call that returned a status other than ok (the message says which and why)."""


class Library:
    """libptxattn.so with the prototypes of the functions below."""

    def __init__(self, path):
        lib = ctypes.CDLL(path)
        for cls, name in INIT_NAMES.items():
            getattr(lib, f"ptxattn_{name}_init").argtypes = [ctypes.POINTER(cls), ctypes.c_size_t]
        lib.ptxattn_prefill_plan_create.argtypes = [ctypes.POINTER(ctypes.c_void_p)]
        lib.ptxattn_prefill_plan_destroy.argtypes = [ctypes.c_void_p]
        lib.ptxattn_prefill_plan_destroy.restype = None
        lib.ptxattn_plan_prefill.argtypes = [ctypes.c_void_p, ctypes.POINTER(PrefillConfig),
                                             ctypes.POINTER(BatchIndices)]
        lib.ptxattn_run_prefill.argtypes = [ctypes.c_void_p, ctypes.POINTER(PrefillTensors), ctypes.c_void_p]
        lib.ptxattn_validate_prefill_config.argtypes = [ctypes.POINTER(PrefillConfig)]
        lib.ptxattn_validate_batch_indices.argtypes = [ctypes.POINTER(PrefillConfig), ctypes.POINTER(BatchIndices)]
        lib.ptxattn_version_string.restype = ctypes.c_char_p
        lib.ptxattn_last_error_message.restype = ctypes.c_char_p
        lib.ptxattn_status_name.argtypes = [ctypes.c_int]
        lib.ptxattn_status_name.restype = ctypes.c_char_p
        self.lib, self.path = lib, path

    def check(self, status, what):
        """Raises PtxattnError unless status is ok."""
        if status != PTXATTN_STATUS_OK:
            raise PtxattnError(f"{what}: {self.lib.ptxattn_status_name(status).decode()}: "
                               f"{self.lib.ptxattn_last_error_message().decode()}")

    def new(self, cls):
        """A struct filled by its _init function (struct_size and the C++ defaults)."""
        name = INIT_NAMES[cls]
        value = cls()
        self.check(getattr(self.lib, f"ptxattn_{name}_init")(ctypes.byref(value), ctypes.sizeof(cls)),
                   f"ptxattn_{name}_init")
        return value

    def batch_indices(self, num_requests, qo_indptr, kv_indptr, kv_indices=None, kv_last_page_len=None):
        """BatchIndices over ctypes arrays (the caller keeps them alive while the struct is used)."""
        indices = self.new(BatchIndices)
        indices.num_requests = num_requests
        indices.qo_indptr, indices.kv_indptr = qo_indptr, kv_indptr
        indices.kv_indices, indices.kv_last_page_len = kv_indices, kv_last_page_len
        return indices

    def prefill_tensors(self, q, k, v, o, lse, num_q_tokens, num_kv_rows):
        tensors = self.new(PrefillTensors)
        tensors.q, tensors.k, tensors.v, tensors.o, tensors.lse = q, k, v, o, lse
        tensors.num_q_tokens, tensors.num_kv_rows = num_q_tokens, num_kv_rows
        return tensors
