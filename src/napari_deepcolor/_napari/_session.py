"""What the dock widgets of one napari session tell each other.

The Train widget announces the model files it writes (Segment and Batch offer
them); the Segment widget remembers the decode values last shown for a model
file (Batch can take them). Qt signals, so that Qt disconnects closed widgets.
"""

from __future__ import annotations

import os

from qtpy.QtCore import QObject, Signal


def _key(path) -> str:
    return os.path.realpath(str(path))


class _Session(QObject):
    #: a model file was written by the Train widget
    model_saved = Signal(str)
    #: the Segment widget showed labels decoded with new values for this model file
    decode_values_changed = Signal(str)

    def __init__(self):
        super().__init__()
        self._decode_values: dict[str, dict] = {}

    def remember_decode_values(self, model_path, values: dict) -> None:
        key = _key(model_path)
        if self._decode_values.get(key) != values:
            self._decode_values[key] = dict(values)
            self.decode_values_changed.emit(key)

    def decode_values(self, model_path) -> dict | None:
        """The values last used in the Segment widget for this model file, if any."""
        return self._decode_values.get(_key(model_path)) if model_path else None


session = _Session()
