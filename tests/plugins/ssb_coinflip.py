"""Test-only domain for pipeline plumbing with the tiny random model, which never solves real
problems: a response is "correct" when its length is even. Random text gives a mix of right and
wrong rollouts, so every stage of SSB (selection, hinted solution, distill, eval) really runs.

``COINFLIP_ALL_RIGHT_AFTER=PATH``: once PATH exists, every response is right (so a later round of
``ssb run`` finds nothing to keep).

``COINFLIP_VERIFY_SECONDS=S``: each verification takes S seconds more, so a test that must catch
curate mid-way (a kill) has a window on a fast machine too (the tiny model generates a batch in
well under a second)."""

import os
import time

from ssb.hookspecs import hookimpl
from ssb.records import Problem, Verdict
from ssb.types import DatasetLoader, LoadResult, PromptTemplate


def load(source=None, split="train", skip_bad=False, filters=None):
    n = int((filters or {}).get("n", 12 if split == "train" else 8))
    return LoadResult([Problem(id=f"coinflip/{split}/{i}", question=f"Say something, number {i}.",
                               gold="even", dataset="coinflip") for i in range(n)])


class ParityVerifier:
    domain = "coinflip"

    def extract(self, response, strict=False):
        return "even" if len(response) % 2 == 0 else "odd"

    def verify(self, response, gold, *, strict=False, timeout=None):
        time.sleep(float(os.environ.get("COINFLIP_VERIFY_SECONDS", "0")))
        marker = os.environ.get("COINFLIP_ALL_RIGHT_AFTER")
        if marker and os.path.exists(marker):
            return Verdict(extracted=gold, correct=True)
        extracted = self.extract(response)
        return Verdict(extracted=extracted, correct=extracted == gold)


@hookimpl
def register_datasets(register):
    register(DatasetLoader("coinflip", "coinflip", load, default_source="generated"))
    # The same problems under a second name: a study or run with two eval sets.
    register(DatasetLoader("coinflip-again", "coinflip", load, default_source="generated"))


@hookimpl
def register_verifiers(register):
    register(ParityVerifier())


@hookimpl
def register_prompts(register):
    register(PromptTemplate("coinflip", "1", "coinflip", "You are a test.", "{question}",
                            "{question}\nRight: {correct}\nWrong: {wrong}\nWrite it well."))
    # A second instruction (after the default): a study's prompt arm chooses between the two.
    register(PromptTemplate("terse", "1", "coinflip", "Answer in one word.", "{question}",
                            "{question}\nRight: {correct}\nWrong: {wrong}\nWrite it well."))
