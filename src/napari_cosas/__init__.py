"""napari-cosas: annotate adenocarcinoma in H&E patches.

The core (everything outside ``_widget``, ``_reader``, ``_writer`` and
``_sample_data``) never imports napari or Qt.
"""

__version__ = "0.1.0"
