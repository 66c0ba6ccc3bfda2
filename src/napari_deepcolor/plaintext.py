"""Docstring markup turned into the plain words a help line, a tooltip or a message shows.

The CLI's option help and the widgets' tooltips are read from numpydoc docstrings, which
cross-reference code in Sphinx markup; a user reads ``--class-colors``'s help, not
``:func:`~napari_deepcolor.methods.classes.class_color_owners```.
"""

from __future__ import annotations

import re

#: ':func:`~a.b.name`', ':class:`Name`', ':meth:`text <target>`' (any Sphinx role, domain prefix allowed)
_ROLE = re.compile(r":(?:[a-z]+:)?[a-z]+:`([^`]*)`")
#: ``literal`` (RST inline code)
_LITERAL = re.compile(r"``([^`]*)``")
#: `text <https://...>`_ (RST link) and `text`_ (RST reference)
_LINK = re.compile(r"`([^`<]*?)\s*(?:<[^`>]*>)?`__?")

#: what any help text, tooltip or message must not contain once made plain (tests scan for it)
MARKUP = re.compile(r":[a-z]+:`|``|`_|~napari_deepcolor\.|\bnapari_deepcolor\.[a-z_]+\.[a-z_]")


def _reference(target: str) -> str:
    """'~a.b.name' -> 'name'; 'text <a.b.name>' -> 'text'; 'a.b.name' -> 'name'; 'name()' kept."""
    match = re.match(r"^(.*?)\s*<[^<>]*>$", target)
    if match and match.group(1):
        return match.group(1)
    return target.lstrip("~!").split(".")[-1] or target


def plain_text(text: str) -> str:
    """``text`` without Sphinx/RST markup: roles become the referred name, literals their content.

    Examples
    --------
    >>> plain_text("IoU > ``good_seed_iou`` (:func:`~napari_deepcolor.methods.classes.class_color_owners`)")
    'IoU > good_seed_iou (class_color_owners)'
    """
    text = _ROLE.sub(lambda m: _reference(m.group(1)), text)
    text = _LITERAL.sub(r"\1", text)
    return _LINK.sub(r"\1", text)
