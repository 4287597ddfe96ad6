"""keep_freed_heap_memory: applied on glibc, a no-op elsewhere."""

import platform
import sys

from napari_cosas.inference.heap import keep_freed_heap_memory


def test_keep_freed_heap_memory_applies_on_glibc():
    applied = keep_freed_heap_memory()
    if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
        assert applied is True
    else:
        assert applied is False
