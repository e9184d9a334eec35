"""Competition math for ssb: datasets ``math500``, ``aime24``, ``amc23``, ``math`` (Hendrycks
MATH with subject/level filters), the verifier domain ``math`` and the template ``math-tutor@1``.
"""

from __future__ import annotations

from ssb.hookspecs import hookimpl
from ssb.prompts import TEACHER_TEMPLATE_V2, instruction_templates, make_template
from ssb_math.datasets import LOADERS
from ssb_math.verifier import MathVerifier

__version__ = "0.1.0"

# Version 2 of the hinted prompt is the default (registered first); version 1 stays registered
# so that `--template math-tutor@1` reproduces runs made with it (docs/study-teacher.md).
TEMPLATE = make_template("math-tutor", "2", "math", teacher=TEACHER_TEMPLATE_V2)
TEMPLATE_V1 = make_template("math-tutor", "1", "math")


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
    register(TEMPLATE_V1)
    for template in instruction_templates("math"):  # the study's training-free `prompt` arm
        register(template)
