"""numpy arrays as Arrow arrays, built from their buffers.

`pa.array()` imports pandas the first time it is called (to check whether it was handed a pandas object):
half a second, and the garbage collector passes over everything pandas creates, on every ingest. The
ingest path builds its few arrays here instead.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def int64_array(values: np.ndarray) -> pa.Array:
    """A copy-free Arrow int64 array over `values` (converted to contiguous int64 first if need be)."""
    data = np.ascontiguousarray(values, dtype=np.int64)
    return pa.Array.from_buffers(pa.int64(), len(data), [None, pa.py_buffer(data)])
