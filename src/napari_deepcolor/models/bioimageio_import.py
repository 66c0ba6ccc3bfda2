"""Reading a bioimage.io package exported by napari-deepcolor back (writing one: :mod:`.bioimageio_export`).

Reading a package never executes its contents: the package carries our own model file
(safetensors + JSON) as an attachment, and :func:`model_file_in_package` copies that out of the
zip. The TorchScript weights in it are never loaded by us.
"""

from __future__ import annotations

import hashlib
import tempfile
import zipfile
from pathlib import Path

from ..errors import DeepColorError

#: name of our model file inside the package (an attachment)
MODEL_ATTACHMENT = "napari_deepcolor_model.safetensors"


def is_our_package(path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return MODEL_ATTACHMENT in archive.namelist()
    except (OSError, zipfile.BadZipFile):
        return False


def model_file_in_package(path) -> Path:
    """The napari-deepcolor model file inside an exported bioimage.io package, copied out to a
    cache folder (keyed by the package's content). Reads only the zip; nothing in it runs."""
    path = Path(path)
    if not path.is_file():
        raise DeepColorError(f"model package {path} does not exist; check the path.")
    try:
        with zipfile.ZipFile(path) as archive:
            if MODEL_ATTACHMENT not in archive.namelist():
                raise DeepColorError(f"{path} is a zip but not a bioimage.io package exported by napari-deepcolor "
                                     f"(it has no {MODEL_ATTACHMENT}); other bioimage.io models cannot be decoded "
                                     "into instances by this plugin.")
            data = archive.read(MODEL_ATTACHMENT)
    except zipfile.BadZipFile as exc:
        raise DeepColorError(f"{path} is not a readable zip file ({exc}).") from exc
    digest = hashlib.sha256(data).hexdigest()[:16]
    target = Path(tempfile.gettempdir()) / "napari-deepcolor-packages" / f"{path.stem}-{digest}.safetensors"
    if not target.is_file():
        from ..data.io import atomic_write

        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, lambda tmp: tmp.write_bytes(data), overwrite=True)
    return target
