"""Science multiple choice for ssb: ARC questions, judged by the choice a reply makes.

Registers the datasets ``arc-challenge``, ``arc-easy`` and ``arc`` (both; hub
``allenai/ai2_arc`` or local files of its rows), the verifier domain ``science`` (the last
explicit choice; see :mod:`ssb_science.verifier`) and the template ``science-tutor@1``.
"""

from __future__ import annotations

from ssb.hookspecs import hookimpl
from ssb.prompts import make_template

from ssb_science.datasets import LOADERS
from ssb_science.verifier import ScienceVerifier

__version__ = "0.1.0"

SCIENCE_TUTOR_SYSTEM = (
    "You are a careful science tutor. Read the question and every answer choice, reason step "
    "by step about the science involved, and rule out the wrong choices. When you are done, "
    "write the letter of the correct choice on its own at the end inside \\boxed{}, for "
    "example \\boxed{B}."
)

STUDENT_TEMPLATE = (
    "{question}\n\n"
    "Reason step by step, then give the letter of the correct choice inside \\boxed{{}}."
)

# The hinted prompt in the style of ssb.prompts.TEACHER_TEMPLATE_V2 (chosen for the arithmetic
# domain, docs/study-teacher.md): the correct attempt first, plain labels, a plain request to
# rewrite it; for multiple choice the rewrite must argue from facts about the choices, since a
# lucky guess can be "correct" with reasoning that does not support it.
TEACHER_TEMPLATE = (
    "Question:\n{question}\n\n"
    "Correct solution (it chooses the right answer):\n{correct}\n\n"
    "Wrong solution (it chooses a wrong answer, do not follow it):\n{wrong}\n\n"
    "Rewrite the correct solution in your own words as a clean, step-by-step explanation. "
    "Explain with facts why the correct choice is right and why each other choice is wrong; "
    "keep the choice the correct solution makes and do not use any claim from the wrong "
    "solution that the correct solution does not make. Do not mention the solutions above. "
    "End with the letter of the correct choice inside \\boxed{{}}.\n"
)

TEMPLATE = make_template("science-tutor", "1", "science", system=SCIENCE_TUTOR_SYSTEM,
                         student=STUDENT_TEMPLATE, teacher=TEACHER_TEMPLATE)


@hookimpl
def register_datasets(register):
    for loader in LOADERS:
        register(loader)


@hookimpl
def register_verifiers(register):
    register(ScienceVerifier())


@hookimpl
def register_prompts(register):
    register(TEMPLATE)
