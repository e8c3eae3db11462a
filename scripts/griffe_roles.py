"""A griffe extension for the API reference (mkdocs.yml loads it): dataengine's docstrings are written for
Sphinx-style readers (``:class:`~dataengine.errors.LockError```, ``literal``, ``text::`` before a literal
block), and mkdocstrings renders Markdown. Each role becomes a code span of the name as Sphinx would show it
(``~`` keeps the last part), and a paragraph's closing ``::`` becomes ``:`` (the indented block after it is
a code block in Markdown as it is in reStructuredText). Double backticks are already Markdown code spans."""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|exc|data|obj|const):`(~?)([^`]+)`")


def _role(match: re.Match[str]) -> str:
    short, target = match.group(1), match.group(2)
    if "<" in target and target.endswith(">"):  # :class:`text <target>`
        return f"`{target.split('<', 1)[0].strip()}`"
    return f"`{target.rsplit('.', 1)[-1] if short else target.lstrip('.')}`"


def markdown_docstring(text: str) -> str:
    """A Sphinx-flavoured docstring as Markdown (roles as code spans, ``::`` as ``:``)."""
    text = _ROLE.sub(_role, text)
    return re.sub(r"(?m)(\S)::$", r"\1:", text)


class SphinxRoles(griffe.Extension):
    """Rewrites every docstring once the object tree is built."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown_docstring(obj.docstring.value)
