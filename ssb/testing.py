"""Test helpers for ssb and its plugins: a tiny random-weight Qwen2 model built offline in seconds,
and a toy domain it can "solve" half of the time.

The model never answers real problems correctly; use it for logic, alignment and plumbing tests.
:class:`ParityDomain` (``ssb.plugins.add_plugin(ParityDomain(), "parity")``) judges a response
correct when its length is even, so random text gives the mix of right and wrong rollouts that
every stage of SSB needs -- the whole pipeline runs in a minute on a laptop.  Its tokenizer
is a byte-level BPE trained on the fly, saved as a self-describing ``tokenizer.json`` with a
ChatML chat template (``<|im_start|>`` / ``<|im_end|>``, like Qwen2.5).
"""

from __future__ import annotations

from pathlib import Path

CHATML_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
QWEN2_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

_CORPUS = [
    "You are a helpful math tutor. Reason step by step and put the final answer in \\boxed{}.",
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May.",
    "How many clips did Natalia sell altogether in April and May? 48 / 2 = 24. 48 + 24 = 72.",
    "The answer is \\boxed{72}. Let x = 5, then 2x + 3 = 13. So the answer is \\boxed{13}.",
    "Here is a problem, a correct student response, and an attempt marked wrong by a checker.",
    "Write a complete, standalone step-by-step solution. Warn about likely mistakes.",
    "\\frac{1}{2} + \\frac{1}{3} = \\frac{5}{6}; 0.5 * 4 = 2; 100% of 7 is 7; (3, 4); [1, 2]",
    "0 1 2 3 4 5 6 7 8 9 10 11 12 20 30 40 50 60 70 80 90 100 1000 $ , . : ; ? ! + - * / = ^",
    "Janet's ducks lay 16 eggs per day. She eats three for breakfast every morning.",
]


def build_tokenizer(path: str | Path, vocab_size: int = 1000):
    """Train and save a byte-level BPE tokenizer with a ChatML template; returns it."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    # The same normalizer and pre-tokenizer as Qwen2Tokenizer, so AutoTokenizer (which picks
    # Qwen2Tokenizer next to a qwen2 config.json) and PreTrainedTokenizerFast give identical ids.
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 20, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=None, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        unk_token=None, additional_special_tokens=["<|im_start|>"],
    )
    fast.chat_template = CHATML_TEMPLATE
    fast.padding_side = "left"
    fast.save_pretrained(str(path))
    return fast


def build_tiny_model(path: str | Path, *, vocab_size: int = 1000, hidden_size: int = 64,
                     num_layers: int = 2, num_heads: int = 4, seed: int = 0) -> Path:
    """Save a random-weight Qwen2ForCausalLM + tokenizer to ``path`` (an HF directory)."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer(path, vocab_size=vocab_size)
    config = Qwen2Config(
        vocab_size=len(tok), hidden_size=hidden_size, intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers, num_attention_heads=num_heads,
        num_key_value_heads=max(1, num_heads // 2), max_position_embeddings=2048,
        tie_word_embeddings=False, bos_token_id=None,
        eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tok.convert_tokens_to_ids("<|endoftext|>"),
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id
    )
    model.save_pretrained(str(path), safe_serialization=True)
    return path


def install_plugin_module(root: str | Path, dist: str, entry_name: str, module: str,
                          source: str, version: str = "1.2.3") -> Path:
    """Make ``module`` (its ``source`` text) an installed distribution under ``root`` with an
    ``ssb`` entry point, discovered by importlib.metadata exactly like a pip install.

    Put ``root`` on ``sys.path`` / ``PYTHONPATH`` to load it; for testing plugins without a build.
    """
    import textwrap

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[ssb]\n{entry_name} = {module}\n")
    return root


class ParityDomain:
    """A toy domain plugin: dataset ``parity`` (``n`` problems per split), verifier and prompts.

    A response is "correct" when it has an even number of characters: meaningless, but it lets
    curate, distill and eval run for real on :func:`build_tiny_model`.
    """

    domain = "parity"

    def __init__(self, n: int = 12):
        self.n = n

    def _load(self, source=None, split="train", skip_bad=False, filters=None):
        from ssb.records import Problem
        from ssb.types import LoadResult

        n = int((filters or {}).get("n", self.n))
        offset = 0 if split == "train" else 1000
        return LoadResult([Problem(id=f"parity/{split}/{i}", question=f"Say something, "
                                   f"number {i + offset}.", gold="even", dataset="parity")
                           for i in range(n)])

    def extract(self, response: str, strict: bool = False) -> str:
        return "even" if len(response) % 2 == 0 else "odd"

    def verify(self, response: str, gold: str, *, strict: bool = False, timeout=None):
        from ssb.records import Verdict

        extracted = self.extract(response)
        return Verdict(extracted=extracted, correct=extracted == gold)

    from ssb.hookspecs import hookimpl as _hookimpl

    @_hookimpl
    def register_datasets(self, register):
        from ssb.types import DatasetLoader

        register(DatasetLoader("parity", "parity", self._load, default_source="generated"))

    @_hookimpl
    def register_verifiers(self, register):
        register(self)

    @_hookimpl
    def register_prompts(self, register):
        from ssb.prompts import make_template

        register(make_template("parity", "1", "parity", system="You are a test.",
                               teacher="{question}\nRight: {correct}\nWrong: {wrong}\n"
                               "Write it well."))


# -- a small disk ---------------------------------------------------------------------------------

def small_disk_prefix() -> list[str] | None:
    """An argv prefix under which a command may mount a tmpfs that nobody else sees: a private
    mount namespace (``unshare -m`` as root, ``unshare -rm`` through a user namespace, or
    ``sudo -n unshare -m``), or ``None`` where this machine allows none of them."""
    import os
    import shutil
    import subprocess

    if shutil.which("unshare") is None:
        return None
    candidates = [["unshare", "-m"]] if os.geteuid() == 0 else [["unshare", "-rm"]]
    if os.geteuid() != 0 and shutil.which("sudo"):
        candidates.append(["sudo", "-n", "unshare", "-m"])
    probe = "d=$(mktemp -d) && mount -t tmpfs -o size=64k ssb-probe \"$d\" && umount \"$d\"; " \
            "rc=$?; rmdir \"$d\"; exit $rc"
    for prefix in candidates:
        try:
            if subprocess.run([*prefix, "sh", "-c", probe], capture_output=True,
                              timeout=30).returncode == 0:
                return prefix
        except (OSError, subprocess.TimeoutExpired):
            continue
    return None


def run_on_small_disk(mountpoint: str | Path, steps: "list[tuple[int, list[str]]]", *,
                      side: str | Path, env: "dict[str, str] | None" = None,
                      timeout: float = 900) -> "list[dict]":
    """Run commands with ``mountpoint`` on a real, nearly full filesystem: a tmpfs of the given
    size (KiB) in a private mount namespace (:func:`small_disk_prefix`), resized before each step
    (the same files stay: "free some space, rerun").  Writes fail with the kernel's own ENOSPC,
    no fault injection.  The tmpfs vanishes with the namespace, so after each step its files are
    copied to ``side/step<i>``; returns ``[{"rc", "stdout", "stderr", "files": Path}, ...]``.
    Raises ``RuntimeError`` where no namespace is available (callers skip)."""
    import os
    import shlex
    import signal
    import subprocess

    prefix = small_disk_prefix()
    if prefix is None:
        raise RuntimeError("no private mount namespace here (needs root, unprivileged user "
                           "namespaces or passwordless sudo) to mount a small tmpfs")
    mountpoint, side = Path(mountpoint), Path(side)
    mountpoint.mkdir(parents=True, exist_ok=True)
    side.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ if env is None else env)
    lines = ["set -u"]
    lines += [f"export {k}={shlex.quote(v)}" for k, v in env.items()
              if k.replace("_", "").isalnum() and not k[0].isdigit()]
    mp = shlex.quote(str(mountpoint))
    for i, (size_kib, argv) in enumerate(steps):
        opts = f"size={int(size_kib)}k"
        lines.append(f"mount -t tmpfs -o {opts} ssb-small-disk {mp} || exit 97" if i == 0
                     else f"mount -o remount,{opts} {mp} || exit 97")
        out = side / f"step{i}"
        lines.append(f"mkdir -p {shlex.quote(str(out))}")
        lines.append(f"{shlex.join(argv)} > {shlex.quote(str(side / f'step{i}.out'))} "
                     f"2> {shlex.quote(str(side / f'step{i}.err'))}; "
                     f"echo $? > {shlex.quote(str(side / f'step{i}.rc'))}")
        lines.append(f"cp -a {mp}/. {shlex.quote(str(out))}/")
    if prefix[0] == "sudo":  # give the copies back to the user running the test
        lines.append(f"chown -R {os.getuid()}:{os.getgid()} {shlex.quote(str(side))}")
    proc = subprocess.Popen([*prefix, "bash", "-c", "\n".join(lines)], start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    if proc.returncode == 97:
        raise RuntimeError(f"could not mount a tmpfs at {mountpoint}: {err.strip()}")
    results = []
    for i in range(len(steps)):
        rc_file = side / f"step{i}.rc"
        results.append({
            "rc": int(rc_file.read_text()) if rc_file.exists() else None,
            "stdout": (side / f"step{i}.out").read_text(errors="replace")
            if (side / f"step{i}.out").exists() else "",
            "stderr": (side / f"step{i}.err").read_text(errors="replace")
            if (side / f"step{i}.err").exists() else "",
            "files": side / f"step{i}"})
    return results
