"""What the dock widgets of one napari session tell each other (a model just trained or saved)."""

from __future__ import annotations

from psygnal import Signal


class _Session:
    #: a model file was written by the Train widget; Segment and Batch offer it
    model_saved = Signal(str)


session = _Session()
