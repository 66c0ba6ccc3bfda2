"""Starter models shipped with the package, loaded by name (``nuclei``, ``cells``, ``worms``, ``bacteria``).

Each starter is an ordinary model file (safetensors, fp16 weights, JSON configuration) in this
folder; its model card (data, licence, citation, recipe, test-split scores) is the ``card`` entry of
that configuration. The files are written by ``scripts/make_starters.py``; nothing here trains.
A model argument that is a bare name is looked up here by :mod:`napari_deepcolor.models.sources`.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from ...errors import DeepColorError

#: the order starters are offered in (any other bundled file comes after these, by name)
PREFERRED_ORDER = ("nuclei", "cells", "worms", "bacteria")
SUFFIX = ".safetensors"


def starters_folder() -> Path:
    return Path(str(files(__name__)))


def starter_names() -> list[str]:
    """Names of the bundled starters, in the order they are offered."""
    found = sorted(p.name[:-len(SUFFIX)] for p in starters_folder().glob("*" + SUFFIX))
    rank = {name: i for i, name in enumerate(PREFERRED_ORDER)}
    return sorted(found, key=lambda name: (rank.get(name, len(rank)), name))


def starter_path(name: str) -> Path:
    """The file of starter ``name``; an unknown name is an error that lists the known ones."""
    path = starters_folder() / f"{name}{SUFFIX}"
    if not path.is_file():
        raise DeepColorError(unknown_model_message(name))
    return path


def unknown_model_message(name: str) -> str:
    known = starter_names()
    listed = ", ".join(known) if known else "none are installed"
    return (f"'{name}' is neither a model file nor a starter model. Starter models: {listed} "
            "(`napari-deepcolor models` describes them); otherwise give the path of a .safetensors model "
            "file or of a bioimage.io .zip exported by napari-deepcolor.")


def starter_card(name: str) -> dict:
    """The model card stored in starter ``name``'s file."""
    from ..files import read_model_file_config

    return read_model_file_config(starter_path(name)).get("card", {})


def describe_starter(name: str) -> str:
    """One line: name, what it segments, the data and its licence, the weights' licence, the training steps
    and the test-split scores (a card without an entry says "not recorded", never a bare "?")."""
    card = starter_card(name)
    unknown = "not recorded"
    scores = card.get("test_scores", {})
    score = f"; test AP {scores['ap']:.3f}, F1 {scores['f1']:.3f}" if {"ap", "f1"} <= set(scores) else \
        "; test scores not recorded"
    steps = card.get("recipe", {}).get("iterations")
    return (f"{name}: {card.get('kind_of_data', unknown)}; data {card.get('dataset', unknown)}, licence "
            f"{card.get('data_licence', unknown)}; weights licence {card.get('licence_spdx', unknown)}; "
            f"{f'{steps} training steps' if steps else 'training steps not recorded'}{score}")
