"""Which part of a model response is the candidate program.

Rule (documented in the README, the same for the student, the teacher and ``ssb verify``):

1. Fenced blocks tagged ``python``/``py``/``python3`` (any case) that are closed.  Among them the
   **last one that defines a function or class** wins, else the last one -- so a trailing
   "example usage" block does not replace the solution written above it.
2. ``strict=False`` only (rollouts, eval; ``strict=True`` is what curate uses for the teacher's
   solution): untagged closed fences count as Python blocks too, a final fence left open by a
   truncated response counts up to the end of the text, and a response with no fence at all that
   parses as Python and defines a function is taken whole.
3. Otherwise: no code (``None``).

Blocks are dedented (markdown lists indent them).  Model text is only parsed here, never run.
"""

from __future__ import annotations

import ast
import re
import textwrap

PYTHON_TAGS = {"python", "py", "python3", "py3"}
_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})[ \t]*([^\s`]*)[^\n]*$", re.M)
_DEFINES = re.compile(r"^[ \t]*(?:async[ \t]+)?(?:def|class)[ \t]+\w", re.M)


def _blocks(text: str) -> list[tuple[str, str, bool]]:
    """(tag, body, closed) of each fenced block, in order."""
    blocks = []
    pos = 0
    while True:
        opening = _FENCE.search(text, pos)
        if opening is None:
            return blocks
        fence, tag = opening.group(1), opening.group(2).lower()
        start = opening.end() + 1
        closing = re.compile(r"^[ \t]*" + re.escape(fence[0]) + "{" + str(len(fence))
                             + r",}[ \t]*$", re.M).search(text, start)
        if closing is None:
            blocks.append((tag, text[start:], False))
            return blocks
        blocks.append((tag, text[start:closing.start()], True))
        pos = closing.end()


def _pick(bodies: list[str]) -> str | None:
    bodies = [b for b in bodies if b.strip()]
    if not bodies:
        return None
    defining = [b for b in bodies if _DEFINES.search(b)]
    chosen = (defining or bodies)[-1]
    return textwrap.dedent(chosen).strip("\n") + "\n"


def extract_code(response: str, strict: bool = False) -> str | None:
    """The candidate program in ``response`` (see the module docstring), or None."""
    if not isinstance(response, str) or not response.strip():
        return None
    blocks = _blocks(response)
    tagged = [body for tag, body, closed in blocks if closed and tag in PYTHON_TAGS]
    if strict:
        return _pick(tagged)
    last = len(blocks) - 1  # only the final block can be unclosed
    lenient = [body for i, (tag, body, closed) in enumerate(blocks)
               if (tag in PYTHON_TAGS or tag == "") and (closed or i == last)]
    code = _pick(lenient)
    if code is not None:
        return code
    if not blocks and _DEFINES.search(response):
        try:
            ast.parse(response)
        except (SyntaxError, ValueError):
            return None
        return response.strip("\n") + "\n"
    return None
