"""The process-wide changes the dock widget makes when it opens, all of them, in one place.

napari runs every plugin in one Python process, so what is set here reaches past napari-cosas;
each change is kept as small as it can be, and what is left of it is said here.

1. **triton is hidden while the model stack is imported** (:func:`import_model_stack`). The first
   import of torchvision (through timm and segment-anything) runs ``torch._dynamo``, which loads
   triton and its bundled LLVM. Once napari has an OpenGL context on Mesa, that LLVM next to
   Mesa's crashes the process (segmentation fault, seen with napari 0.9 under xvfb). napari-cosas
   never compiles kernels, so for the duration of that import only, ``sys.modules["triton"]``
   is ``None`` (``import triton`` raises ``ImportError``); afterwards the entry is removed again,
   and a later ``import triton`` (by another plugin) loads it as usual. What remains: the torch,
   torchvision and timm modules first imported in that window recorded that triton is
   unavailable, and keep that record for the process (``torch.compile`` with triton kernels is
   then unavailable to other plugins too). When triton is already loaded nothing is hidden; when
   the model stack is already imported, hiding it changes nothing.
2. **glibc's malloc keeps freed memory** (:func:`napari_cosas.inference.heap.keep_freed_heap_memory`): a
   click allocates and frees a few dozen 4-8 MB tensors, and glibc's default (fresh ``mmap``
   pages for each, returned at once) costs about a quarter of a CPU click in page faults.
   ``mallopt`` is a setting of the C library for the whole process: it cannot be limited to this
   plugin's allocations. Its effect on the rest of napari: allocations up to 32 MiB come from the
   heap instead of ``mmap``, and up to 1 GiB of freed heap stays with the process instead of
   going back to the system.
"""

from __future__ import annotations

import sys

from .inference.heap import keep_freed_heap_memory


def import_model_stack() -> None:
    """Import torch, timm and segment-anything (on the GUI thread) with triton hidden meanwhile
    (point 1 above)."""
    hide = "triton" not in sys.modules
    if hide:
        sys.modules["triton"] = None  # makes `import triton` raise ImportError
    try:
        from .inference import predictor  # noqa: F401
        from .models import segmenter  # noqa: F401
    finally:
        if hide and sys.modules.get("triton", 0) is None:
            del sys.modules["triton"]


def prepare_process() -> None:
    """Both changes above; the dock widget calls this once, when it is created."""
    import_model_stack()
    keep_freed_heap_memory()
