"""Default prompt texts (our own wording of the SSB paper's instructions) and a template helper.

``PromptTemplate.teacher`` and ``.student`` are ``str.format`` templates, so literal braces are
doubled here (``\\\\boxed{{}}`` renders as ``\\boxed{}``).  Domains register named, versioned
templates built with :func:`make_template`; a run records ``template.id`` (``name@version``).
"""

from __future__ import annotations

from ssb.types import PromptTemplate

MATH_TUTOR_SYSTEM = (
    "You are a careful math tutor. Solve the problem by reasoning step by step, checking each "
    "calculation as you go. When you are done, write the final answer on its own at the end "
    "inside \\boxed{}, for example \\boxed{42}."
)

STUDENT_TEMPLATE = "{question}"

# The hinted teacher prompt: the problem, one verified-correct response and one response an
# automatic checker marked wrong; the model writes one standalone solution that never reveals
# that it saw either attempt.
TEACHER_TEMPLATE = (
    "Here is a problem, followed by two attempts at solving it.\n\n"
    "### Problem\n{question}\n\n"
    "### Attempt A (this one reached the correct answer)\n{correct}\n\n"
    "### Attempt B (an automatic checker marked this one wrong)\n{wrong}\n\n"
    "### Your task\n"
    "Write one coherent, complete, step-by-step solution to the problem, as if you were solving "
    "it for the first time. Where a step is easy to get wrong (for example the mistake made in "
    "the attempt that was marked wrong), point out the pitfall in general terms and show the "
    "right way to do it. Your solution must stand on its own: never mention, quote or hint that "
    "any attempts, answers or checkers were shown to you. End with the final answer inside "
    "\\boxed{{}}, and make it the same answer that Attempt A reached."
)


# Version 2 of the hinted prompt, chosen on the arithmetic dev split with the embedded 0.5B model
# (docs/study-teacher.md has the variants measured and their numbers).  What that model does with a
# hinted prompt is mostly re-type one of the two attempts -- the first one shown, more often than
# not -- so the correct attempt comes first, right after the problem, and the task asks plainly
# for the correct solution rewritten with its own calculations.  Plain labels instead of "###"
# headers (v1's replies often re-typed the whole prompt, headers and wrong attempt included, and
# ran out of tokens); no request to discuss the pitfall (v1's replies then wrote about
# "Attempt A", which the student never sees, and boxed a wrong number while doing so).  The
# correct attempt's answer is not restated: a variant that stated it got replies such as
# "The correct solution is: \boxed{13}", which verify but teach nothing.
TEACHER_TEMPLATE_V2 = (
    "Problem:\n{question}\n\n"
    "Correct solution (its final answer is right):\n{correct}\n\n"
    "Wrong solution (its final answer is wrong, do not follow it):\n{wrong}\n\n"
    "Rewrite the correct solution in your own words as a clean, step-by-step solution. Keep "
    "every calculation of the correct solution and its final answer; do not use any number from "
    "the wrong solution that the correct solution does not have. Write the math in plain text, "
    "without code. Do not mention the solutions above. End with the final answer inside "
    "\\boxed{{}}.\n"  # (the trailing newline is part of the text measured)
)


def make_template(name: str, version: str, domain: str, *, system: str = MATH_TUTOR_SYSTEM,
                  student: str = STUDENT_TEMPLATE,
                  teacher: str = TEACHER_TEMPLATE) -> PromptTemplate:
    """A :class:`ssb.types.PromptTemplate` with the default math-tutor texts unless overridden.

    ``teacher`` defaults to the first hinted text, :data:`TEACHER_TEMPLATE`, so a template
    registered before version 2 existed keeps its exact text; new templates should pass
    ``teacher=TEACHER_TEMPLATE_V2`` (what the first-party domains' ``@2`` templates use).  A domain
    keeps registering every version it shipped, newest first (the first registered is its
    default), so ``--template NAME@1`` reproduces an older run.  Checks that ``student`` and
    ``teacher`` format with exactly the fields the stages pass.
    """
    student.format(question="q")
    teacher.format(question="q", correct="c", wrong="w", wrong_detail="d")
    return PromptTemplate(name=name, version=version, domain=domain, system=system,
                          student=student, teacher=teacher)


# -- training-free instructions (the study's `prompt` arm) ----------------------------------------
# Candidates for "the best instruction we could write without training" (docs/study-gsm8k.md). The
# embedded default is a *coder* model: asked to reason, it often writes Python that nobody runs
# and boxes a guess, so every candidate asks for plain-text arithmetic.  Which one the study uses
# is chosen on a dev slice by the study itself (the highest dev accuracy; ties: the first listed),
# never on test.  Registered by the math-like domains under these names, after their defaults.
PROSE_SYSTEM = (
    "You are a careful math tutor. Solve the problem by reasoning step by step in plain words "
    "and arithmetic. Do not write code: nobody will run it, so you must work out every number "
    "yourself. Write one calculation per line, like 3 * 4 = 12, and check it before going on. "
    "When you are done, write the final answer on its own at the end inside \\boxed{}, for "
    "example \\boxed{42}."
)

PLAN_SYSTEM = (
    "You are a careful math tutor. First list the quantities the problem gives and what it asks "
    "for. Then solve it step by step in plain words, one calculation per line (for example "
    "3 * 4 = 12), without writing any code, and check that your result answers the question "
    "that was asked. End with the final answer on its own inside \\boxed{}, for example "
    "\\boxed{42}."
)

# One worked example, written for this purpose (not taken from any benchmark).
EXAMPLE_STUDENT = (
    "Here is an example of a good solution.\n\n"
    "Problem: A baker makes 24 muffins in the morning and 18 in the afternoon. He sells 30 of "
    "them and gives half of the rest to a neighbour. How many muffins does he have left?\n\n"
    "Solution: He makes 24 + 18 = 42 muffins in all. After selling 30 he has 42 - 30 = 12. He "
    "gives half of those away: 12 / 2 = 6. So he has 12 - 6 = 6 muffins left.\n"
    "\\boxed{{6}}\n\n"
    "Now solve this problem the same way, in plain words and without code.\n\n"
    "Problem: {question}"
)


def instruction_templates(domain: str) -> list[PromptTemplate]:
    """The training-free instruction candidates, as templates of ``domain``: ``prose@1``,
    ``plan@1`` and ``example@1`` (the hinted text is v2's; these are student-side instructions)."""
    return [
        make_template("prose", "1", domain, system=PROSE_SYSTEM, teacher=TEACHER_TEMPLATE_V2),
        make_template("plan", "1", domain, system=PLAN_SYSTEM, teacher=TEACHER_TEMPLATE_V2),
        make_template("example", "1", domain, system=PROSE_SYSTEM, student=EXAMPLE_STUDENT,
                      teacher=TEACHER_TEMPLATE_V2),
    ]
