"""Competition math for ssb: datasets ``math500``, ``aime24``, ``amc23``, ``math`` (Hendrycks
MATH with subject/level filters), the verifier domain ``math`` and the template ``math-tutor@1``.
"""

from __future__ import annotations

from ssb.hookspecs import hookimpl
from ssb.prompts import make_template
from ssb_math.datasets import LOADERS
from ssb_math.verifier import MathVerifier

__version__ = "0.1.0"

TEMPLATE = make_template("math-tutor", "1", "math")


@hookimpl
def register_datasets(register):
    for loader in LOADERS:
        register(loader)


@hookimpl
def register_verifiers(register):
    register(MathVerifier())


@hookimpl
def register_prompts(register):
    register(TEMPLATE)
