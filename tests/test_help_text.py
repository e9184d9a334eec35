"""Every command's ``--help`` says what its source says: no bracketed word eaten by rich markup
(``[curate]``, ``[required]``), no file named that does not exist."""

from __future__ import annotations

import re

from conftest import REPO_ROOT

BOX = re.compile("[│╭╮╰╯─]")
BRACKETED = re.compile(r"\[[^\[\]\s]+\]")
GAP = re.compile(r"\w ,|\(\s*\)")
REPO_FILE = re.compile(r"\b(?:docs|studies|examples|scripts|benchmarks)/[\w./-]*\w"
                       r"\.(?:toml|md|sh|py)")


def _commands(cmd, path=()):
    yield list(path), cmd
    for name, sub in (getattr(cmd, "commands", None) or {}).items():
        yield from _commands(sub, (*path, name))


def _help_screens(monkeypatch):
    import typer.main
    from typer.testing import CliRunner

    from ssb.cli import build_app

    monkeypatch.setenv("COLUMNS", "250")
    app = build_app()
    runner = CliRunner()
    for path, cmd in _commands(typer.main.get_command(app)):
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        sources = [cmd.help or ""] + [getattr(p, "help", None) or "" for p in cmd.params]
        yield " ".join(["ssb", *path]), sources, " ".join(BOX.sub(" ", result.output).split())


def test_help_keeps_every_bracketed_word(monkeypatch):
    seen = set()
    for name, sources, shown in _help_screens(monkeypatch):
        for text in sources:
            # The source may already escape a bracket for rich (\[curate]); the screen shows it
            # without the backslash.
            for word in BRACKETED.findall(text.replace("\\[", "[")):
                seen.add(word)
                assert word in shown, f"`{name} --help` lost {word!r} (rich markup ate it)"
        # What an eaten tag leaves: "the config file's ,  and  tables", "()".
        gap = GAP.search(shown)
        assert gap is None, \
            f"`{name} --help` has a gap: ...{shown[gap.start() - 40:gap.end() + 20]}"
    # The check is not vacuous: these are in the sources and must be on the screens.
    assert {"[curate]", "[distill]", "[evaluate]", "[required]"} <= seen


def test_help_names_only_files_that_exist(monkeypatch):
    named = set()
    for name, _, shown in _help_screens(monkeypatch):
        for path in REPO_FILE.findall(shown):
            named.add(path)
            assert (REPO_ROOT / path).is_file(), f"`{name} --help` names {path}, which is missing"
    assert "studies/arithmetic.toml" in named
