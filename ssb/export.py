"""Convert a peft LoRA adapter into llama.cpp's GGUF LoRA-adapter format.

llama.cpp (and so llama-cpp-python's ``Llama(lora_path=...)`` and Ollama's ``ADAPTER``) loads a
LoRA as a separate GGUF next to the base model.  The format, as written by llama.cpp's
``convert_lora_to_gguf.py`` and checked by ``src/llama-adapter.cpp``:

- KV: ``general.architecture`` equal to the base model's (the loader refuses a mismatch),
  ``general.type = "adapter"``, ``adapter.type = "lora"``, ``adapter.lora.alpha`` (float32).
- Per adapted weight ``W`` (GGUF name, e.g. ``blk.3.attn_q.weight``): ``<W>.lora_a`` and
  ``<W>.lora_b``.  peft's ``lora_A`` (numpy shape ``(r, n_in)``) and ``lora_B`` (``(n_out, r)``)
  are stored as they are, *not* transposed: GGUF lists dimensions innermost first, so they
  become ne ``[n_in, r]`` and ``[r, n_out]``, which is what the loader validates
  (``a.ne[0] == W.ne[0]``, ``b.ne[1] == W.ne[1]``, ``a.ne[1] == b.ne[0]``).
- Scale: llama.cpp applies ``delta = scale * (alpha / r) * B @ A`` with r read from ``lora_b``
  (user scale 1 by default; ``alpha == 0`` means "no alpha/r factor").  peft applies
  ``(alpha / r) * B @ A`` (``alpha / sqrt(r)`` with rsLoRA, per-module values with
  ``rank_pattern`` / ``alpha_pattern``).  Where the two disagree for a module, the ratio is
  folded into that module's ``lora_b`` so the effective update is peft's exactly.

Only architectures whose q/k weights llama.cpp's converter stores unpermuted are accepted (the
Qwen2 family); a llama-architecture adapter would need its q/k ``lora_b`` rows permuted.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ssb.errors import SsbError
from ssb.journal import check_write_target, set_output_mode
from ssb.models import ADAPTER_CONFIG, ADAPTER_WEIGHTS, adapter_fingerprint

# peft module path inside a decoder layer -> llama.cpp tensor name inside blk.N
MODULE_TO_GGUF = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}
# HF model_type -> GGUF architecture, for the architectures this converter is correct for.
SUPPORTED_ARCHITECTURES = {"qwen2": "qwen2", "qwen3": "qwen3"}

_LORA_KEY = re.compile(
    r"^base_model\.model\.model\.layers\.(?P<layer>\d+)\."
    r"(?P<module>self_attn\.[qkvo]_proj|mlp\.(?:gate|up|down)_proj)"
    r"\.lora_(?P<ab>[AB])(?:\.[A-Za-z0-9_-]+)?\.weight$"
)


@dataclass
class ExportReport:
    """What was written."""

    path: str
    architecture: str
    tensors: int  # lora_a + lora_b tensors
    modules: int
    layers: int
    rank: int | list[int]
    alpha: float
    rescaled_modules: int  # modules whose lora_b absorbed a peft/llama.cpp scale difference
    base: str | None
    card: str | None = None  # the adapter's model card, copied beside the GGUF

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def is_peft_adapter(path: str | os.PathLike) -> bool:
    p = Path(path)
    return p.is_dir() and (p / ADAPTER_CONFIG).is_file()


def read_adapter_config(adapter_dir: Path) -> dict[str, Any]:
    path = adapter_dir / ADAPTER_CONFIG
    if not path.is_file():
        raise SsbError(f"{adapter_dir}: not a peft adapter directory (no {ADAPTER_CONFIG})")
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SsbError(f"{path}: invalid JSON: {exc}") from None
    if not isinstance(cfg, dict):
        raise SsbError(f"{path}: expected a JSON object")
    return cfg


_TARGET_MODULES = re.compile(r'("target_modules":\s*\[)(\s*)(.*?)(\s*\])', re.DOTALL)


def sort_target_modules(text: str) -> str:
    """``adapter_config.json``'s text with its ``target_modules`` list sorted, every other byte
    as it was.  peft keeps the modules in a set and writes them in that set's order, which changes
    from one process to the next (string hashing is randomized): two identical trainings wrote
    different config bytes, hence different :func:`adapter_fingerprint` values, and an evaluation
    of the same adapter looked stale."""
    m = _TARGET_MODULES.search(text)
    if m is None:
        return text
    try:
        items = json.loads(f"[{m.group(3)}]")
    except json.JSONDecodeError:
        return text
    if not all(isinstance(i, str) for i in items) or items == sorted(items):
        return text
    body = ("," + m.group(2)).join(json.dumps(i) for i in sorted(items))
    return text[:m.start()] + m.group(1) + m.group(2) + body + m.group(4) + text[m.end():]


def canonicalize_adapter_config(adapter_dir: str | os.PathLike) -> None:
    """Rewrite ``adapter_dir``'s config with its modules sorted (atomically; only if needed)."""
    from ssb.journal import atomic_write_text

    path = Path(adapter_dir) / ADAPTER_CONFIG
    text = path.read_text(encoding="utf-8")
    canonical = sort_target_modules(text)
    if canonical != text:
        atomic_write_text(path, canonical)


_ADAPTER_KEY = re.compile(r"^(?P<module>.+)\.lora_(?P<ab>[AB])(?:\.[A-Za-z0-9_-]+)?\.weight$")


def check_adapter(adapter_dir: str | os.PathLike) -> dict[str, int]:
    """Check a peft LoRA directory before anything loads it; returns module -> rank.

    The weights file must be a whole safetensors file (a truncated copy fails here, not as a
    library traceback inside the backend), every lora_A/lora_B pair must have one rank, and that
    rank must be the one ``adapter_config.json`` declares (``r``, or its ``rank_pattern``): a
    config copied from another run would otherwise be loaded with the wrong shapes or, by
    ``ssb export``, with the wrong scale.
    """
    from safetensors import safe_open

    adapter_dir = Path(adapter_dir)
    cfg = read_adapter_config(adapter_dir)
    config_path = adapter_dir / ADAPTER_CONFIG
    weights_path = adapter_dir / ADAPTER_WEIGHTS
    if not weights_path.is_file():
        raise SsbError(f"{adapter_dir}: no {ADAPTER_WEIGHTS} (only safetensors adapters are read)")
    try:
        declared = int(cfg.get("r", 8))
    except (TypeError, ValueError):
        raise SsbError(f"{config_path}: r must be an integer, got {cfg.get('r')!r}") from None
    shapes: dict[str, dict[str, tuple[int, ...]]] = {}
    try:
        with safe_open(str(weights_path), framework="numpy") as f:
            for key in f.keys():
                m = _ADAPTER_KEY.match(key)
                if m is not None:
                    shapes.setdefault(m["module"], {})[m["ab"]] = \
                        tuple(f.get_slice(key).get_shape())
    except Exception as exc:  # safetensors raises its own error types on a bad/short file
        raise SsbError(f"{weights_path}: not a complete safetensors file ({exc}); "
                       "copy the adapter again or retrain it") from None
    if not shapes:
        raise SsbError(f"{weights_path}: no LoRA tensors found")
    ranks: dict[str, int] = {}
    for module, ab in sorted(shapes.items()):
        a, b = ab.get("A"), ab.get("B")
        if a is None or b is None:
            raise SsbError(f"{weights_path}: {module} has lora_A or lora_B missing")
        if len(a) != 2 or len(b) != 2 or a[0] != b[1]:
            raise SsbError(f"{weights_path}: {module}: lora_A {a} and lora_B {b} do not form "
                           "a rank-r pair")
        name = module.removeprefix("base_model.model.")
        want = int(_module_pattern_value(cfg.get("rank_pattern"), name, declared))
        if a[0] != want:
            raise SsbError(f"{config_path} declares rank {want} for {name} but "
                           f"{weights_path.name} holds rank {a[0]}: the config and the weights "
                           "do not belong together")
        ranks[name] = a[0]
    return ranks


def base_architecture(base: str | os.PathLike) -> tuple[str, str, dict[str, tuple[int, ...]]]:
    """(GGUF architecture, resolved path, GGUF tensor shapes or {}) of a base model reference:
    a ``.gguf`` file, an HF directory, or the alias ``default``."""
    from ssb.models import resolve

    ref = resolve(str(base))
    if ref.kind == "gguf":
        import gguf

        from ssb.journal import open_input

        open_input(ref.location, "base GGUF").close()  # a regular file (not a FIFO, /proc)
        try:
            reader = gguf.GGUFReader(ref.location)
        except (ValueError, OSError, KeyError, IndexError, TypeError) as exc:
            raise SsbError(f"{ref.location}: not a readable GGUF file ({exc}); --base takes a "
                           ".gguf model, an HF directory or 'default'") from None
        field = reader.fields.get(gguf.Keys.General.ARCHITECTURE)
        if field is None:
            raise SsbError(f"{ref.location}: GGUF has no general.architecture")
        arch = bytes(field.parts[field.data[0]]).decode("utf-8")
        # GGUFReader reports shapes innermost-first (ggml ne order).
        shapes = {t.name: tuple(int(d) for d in t.shape) for t in reader.tensors}
        return arch, ref.location, shapes
    if ref.kind == "hf_dir":
        cfg_path = Path(ref.location) / "config.json"
        try:
            model_type = json.loads(cfg_path.read_text(encoding="utf-8")).get("model_type")
        except (OSError, json.JSONDecodeError) as exc:
            raise SsbError(f"{cfg_path}: cannot read model_type ({exc})") from None
        if model_type not in SUPPORTED_ARCHITECTURES:
            raise SsbError(
                f"{ref.location}: model_type {model_type!r} is not supported for GGUF LoRA export "
                f"(supported: {', '.join(sorted(SUPPORTED_ARCHITECTURES))})"
            )
        return SUPPORTED_ARCHITECTURES[model_type], ref.location, {}
    raise SsbError(
        f"base model {base!r} is a hub id; GGUF export needs a local .gguf file or HF directory "
        "(pass --base)"
    )


def _module_pattern_value(pattern: dict[str, Any] | None, module_name: str, default: Any) -> Any:
    """peft's rank_pattern / alpha_pattern lookup: a key matches a module path suffix."""
    for key, value in (pattern or {}).items():
        if re.match(rf"(.*\.)?{key}$", module_name):
            return value
    return default


def _check_can_create(path: Path, what: str) -> None:
    """Refuse, before converting, a target that cannot be created: under a file, in a folder
    that is not writable, or on a kernel pseudo-filesystem (``/proc``), where the atomic
    write's temporary file would fail with a traceback after the work is done."""
    import tempfile

    parent = path.parent  # the nearest existing folder (missing ones are created)
    while not os.path.lexists(parent) and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise SsbError(f"{what} {path}: {parent} is not a folder")
    try:
        with tempfile.TemporaryFile(dir=parent, prefix=f".{path.name}."):
            pass
    except OSError as exc:
        raise SsbError(f"{what} {path}: cannot create a file in {parent} "
                       f"({exc.strerror or type(exc).__name__})") from None


def export_lora_to_gguf(adapter_dir: str | os.PathLike, out_path: str | os.PathLike,
                        base: str | os.PathLike | None = None) -> ExportReport:
    """Write ``adapter_dir`` (peft LoRA) as a llama.cpp GGUF LoRA adapter at ``out_path``.

    ``base`` (a ``.gguf``, an HF directory or ``default``) gives the architecture and, for a GGUF
    base, the tensor shapes every adapter tensor is checked against; without it the adapter's
    ``base_model_name_or_path`` is used when it is a local path.  The file is written atomically.
    """
    import numpy as np
    from safetensors.numpy import load_file

    adapter_dir = Path(adapter_dir)
    out_path = Path(out_path)
    if out_path.is_dir() and not out_path.is_symlink():
        raise SsbError(f"GGUF output {out_path} is a directory; name the file to write, e.g. "
                       f"{out_path / (adapter_dir.name + '.gguf')}")
    check_write_target(out_path, "GGUF output")  # no device node, FIFO or symlink replaced
    _check_can_create(out_path, "GGUF output")
    cfg = read_adapter_config(adapter_dir)
    weights_path = adapter_dir / ADAPTER_WEIGHTS
    check_adapter(adapter_dir)  # whole file, one rank per pair, the rank the config declares
    _check_supported_config(cfg, adapter_dir / ADAPTER_CONFIG)

    if base is None:
        declared = cfg.get("base_model_name_or_path")
        if not declared or not Path(str(declared)).expanduser().exists():
            raise SsbError(
                f"{adapter_dir}: the adapter's base_model_name_or_path ({declared!r}) is not a "
                "local path; pass the base model with --base (a .gguf file or HF directory)"
            )
        base = declared
    arch, base_location, base_shapes = base_architecture(base)
    if arch not in SUPPORTED_ARCHITECTURES.values():
        raise SsbError(
            f"base architecture {arch!r} is not supported for GGUF LoRA export (supported: "
            f"{', '.join(sorted(set(SUPPORTED_ARCHITECTURES.values())))}): its q/k weights are "
            "permuted by llama.cpp's converter"
        )

    try:
        tensors = load_file(str(weights_path))
    except Exception as exc:  # safetensors raises its own error types on a bad header
        raise SsbError(f"{weights_path}: cannot read safetensors ({exc})") from None

    pairs: dict[tuple[int, str], dict[str, Any]] = {}
    for key, value in tensors.items():
        m = _LORA_KEY.match(key)
        if m is None:
            raise SsbError(
                f"{weights_path}: tensor {key!r} is not a LoRA A/B weight of "
                f"{', '.join(MODULE_TO_GGUF)}; GGUF export supports only those "
                "(no embeddings, lm_head, biases, DoRA magnitudes or modules_to_save)"
            )
        pairs.setdefault((int(m["layer"]), m["module"]), {})[m["ab"]] = value
    if not pairs:
        raise SsbError(f"{weights_path}: no LoRA tensors found")

    lora_alpha = float(cfg.get("lora_alpha", 8))
    use_rslora = bool(cfg.get("use_rslora", False))
    out_tensors: list[tuple[str, Any]] = []
    ranks: set[int] = set()
    rescaled = 0
    for (layer, module), ab in sorted(pairs.items()):
        name_in_peft = f"model.layers.{layer}.{module}"
        if "A" not in ab or "B" not in ab:
            raise SsbError(f"{weights_path}: {name_in_peft} has lora_A or lora_B missing")
        a = np.ascontiguousarray(ab["A"], dtype=np.float32)  # (r, n_in)
        b = np.ascontiguousarray(ab["B"], dtype=np.float32)  # (n_out, r)
        if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[1]:
            raise SsbError(f"{weights_path}: {name_in_peft}: lora_A {a.shape} and lora_B "
                           f"{b.shape} do not form a rank-r pair")
        r = a.shape[0]
        ranks.add(r)
        gguf_name = f"blk.{layer}.{MODULE_TO_GGUF[module]}.weight"
        if base_shapes:
            want = base_shapes.get(gguf_name)
            if want is None:
                raise SsbError(f"{gguf_name} (from {name_in_peft}) does not exist in the base "
                               f"model {base_location}: wrong base model?")
            if len(want) < 2 or (want[0], want[1]) != (a.shape[1], b.shape[0]):
                raise SsbError(
                    f"{name_in_peft}: adapter maps {a.shape[1]} -> {b.shape[0]} but base tensor "
                    f"{gguf_name} has ne {want}: wrong base model?"
                )
        module_alpha = float(_module_pattern_value(cfg.get("alpha_pattern"), name_in_peft,
                                                   lora_alpha))
        peft_scale = module_alpha / (math.sqrt(r) if use_rslora else r)
        llama_scale = lora_alpha / r if lora_alpha != 0 else 1.0
        if not math.isclose(peft_scale, llama_scale, rel_tol=1e-7, abs_tol=0.0):
            b = b * np.float32(peft_scale / llama_scale)
            rescaled += 1
        out_tensors.append((gguf_name + ".lora_a", a))
        out_tensors.append((gguf_name + ".lora_b", b))

    _write_gguf(out_path, arch, lora_alpha, out_tensors, name=adapter_dir.name)
    card = copy_model_card(adapter_dir, out_path)
    rank: int | list[int] = ranks.pop() if len(ranks) == 1 else sorted(ranks)
    return ExportReport(
        path=str(out_path), architecture=arch, tensors=len(out_tensors), modules=len(pairs),
        layers=len({layer for layer, _ in pairs}), rank=rank, alpha=lora_alpha,
        rescaled_modules=rescaled, base=base_location,
        card=str(card) if card is not None else None,
    )


def copy_model_card(adapter_dir: Path, out_path: Path) -> Path | None:
    """The adapter's model card (``README.md``, :mod:`ssb.modelcard`) beside the GGUF file:
    ``NAME.gguf`` -> ``NAME.README.md``, with a line saying what the file is.  None without one."""
    from ssb.journal import atomic_write_text
    from ssb.modelcard import CARD

    source = Path(adapter_dir) / CARD
    if not source.is_file():
        return None
    dest = out_path.with_name(out_path.stem + "." + CARD)
    check_write_target(dest, "model card")
    note = (f"\n## GGUF\n\n`{out_path.name}` is this adapter converted by `ssb export` for "
            f"llama.cpp (a LoRA adapter: load it next to the base model's GGUF, e.g. "
            f"`llama-cli -m BASE.gguf --lora {out_path.name}`).\n")
    atomic_write_text(dest, source.read_text(encoding="utf-8").rstrip("\n") + "\n" + note)
    return dest


def _check_supported_config(cfg: dict[str, Any], path: Path) -> None:
    peft_type = str(cfg.get("peft_type", "LORA")).upper()
    if peft_type != "LORA":
        raise SsbError(f"{path}: peft_type {peft_type!r}; only LORA adapters can be exported")
    if cfg.get("use_dora"):
        raise SsbError(f"{path}: DoRA adapters have no llama.cpp equivalent; cannot export")
    if cfg.get("modules_to_save"):
        raise SsbError(f"{path}: modules_to_save {cfg['modules_to_save']} holds full weights "
                       "that a GGUF LoRA adapter cannot carry; cannot export")
    if cfg.get("bias", "none") not in ("none", None):
        raise SsbError(f"{path}: bias={cfg['bias']!r} trains biases; cannot export")
    if cfg.get("lora_bias"):
        raise SsbError(f"{path}: lora_bias adapters cannot be exported")


def _write_gguf(out_path: Path, arch: str, alpha: float, tensors: list[tuple[str, Any]],
                name: str) -> None:
    import gguf

    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out_path.name}.", suffix=".tmp",
                                    dir=out_path.parent)
    os.close(fd)
    try:
        writer = gguf.GGUFWriter(tmp_name, arch)
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(alpha))
        writer.add_name(name)
        for tensor_name, data in tensors:
            writer.add_tensor(tensor_name, data)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        with open(tmp_name, "rb+") as f:
            os.fsync(f.fileno())
        _check_written(Path(tmp_name), tensors, out_path)
        check_write_target(out_path, "GGUF output")  # again: it may have appeared meanwhile
        set_output_mode(tmp_name)  # mkstemp's 0600 -> the mode of every ssb output
        os.replace(tmp_name, out_path)
    except OSError as exc:
        from ssb.errors import DiskFull, disk_full_cause

        if disk_full_cause(exc) is not None:  # the partial file is removed below
            raise DiskFull(str(out_path)) from exc
        raise
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)


def _check_written(path: Path, tensors: list[tuple[str, Any]], out_path: Path) -> None:
    """Read the file back: numpy's ``tofile`` (how GGUFWriter writes tensors) can come up short
    on a full disk without raising, which would leave a truncated adapter that loads garbage."""
    import gguf
    import numpy as np

    try:
        written = {t.name: t for t in gguf.GGUFReader(str(path)).tensors}
        complete = all(name in written and np.array_equal(
            np.asarray(written[name].data).reshape(-1), np.asarray(data).reshape(-1))
            for name, data in tensors)
    except (ValueError, OSError, IndexError, KeyError):  # a short file fails to map
        complete = False
    if complete:
        return
    st = os.statvfs(path.parent)
    if st.f_bavail * st.f_frsize < 1 << 20:
        from ssb.errors import DiskFull

        raise DiskFull(str(out_path))
    raise SsbError(f"{out_path}: the GGUF file written does not read back whole; not kept")


def ensure_gguf_adapter(adapter_dir: str | os.PathLike, out_path: str | os.PathLike,
                        base: str | os.PathLike | None) -> Path:
    """Export ``adapter_dir`` to ``out_path`` unless an export of the same adapter is there."""
    out_path = Path(out_path)
    stamp = out_path.with_name(out_path.name + ".source.json")
    fingerprint = adapter_fingerprint(adapter_dir)
    if out_path.is_file() and stamp.is_file():
        try:
            if json.loads(stamp.read_text(encoding="utf-8")).get("fingerprint") == fingerprint:
                return out_path
        except json.JSONDecodeError:
            pass
    report = export_lora_to_gguf(adapter_dir, out_path, base=base)
    from ssb.journal import atomic_write_json

    atomic_write_json(stamp, {"adapter": str(Path(adapter_dir).resolve()),
                              "fingerprint": fingerprint, "export": report.to_dict()})
    return out_path


# -- a round-r student: the sum of several rounds' LoRA deltas as one LoRA ---------------------

FOLD_STAMP = "ssb-folded.json"  # in a folded adapter directory: its ordered sources


def _peft_module_scale(cfg: dict[str, Any], name: str, rank: int) -> float:
    """peft's scaling for one module: alpha / r (alpha / sqrt(r) with rsLoRA), with
    ``alpha_pattern`` applied."""
    alpha = float(_module_pattern_value(cfg.get("alpha_pattern"), name,
                                        float(cfg.get("lora_alpha", 8))))
    return alpha / (math.sqrt(rank) if cfg.get("use_rslora") else rank)


def fold_adapters(adapters: list[str | os.PathLike], out_dir: str | os.PathLike) -> Path:
    """Write one peft LoRA whose update is the sum of ``adapters``' updates (a round-r student).

    Round r's LoRA is trained on the weights of round r-1 merged in, so the round-r student is
    ``W + s1*B1@A1 + ... + sr*Br@Ar``.  Per module that is one LoRA of rank r1+...+rr:
    ``A = [A1; ...; Ar]`` (rows stacked), ``B = [s1*B1 ... sr*Br]`` (columns), with each round's
    scale folded into its B and the folded adapter's own scale 1 (``lora_alpha`` = its rank,
    per module through ``rank_pattern``/``alpha_pattern`` where ranks differ).  A module only some
    rounds adapt gets only their blocks.  It loads wherever a peft LoRA loads on the base model
    (transformers, vLLM) and exports with :func:`export_lora_to_gguf` for llama.cpp.  Written
    atomically; ``out_dir`` is replaced.
    """
    import shutil

    import numpy as np
    from safetensors.numpy import load_file, save_file

    sources = [Path(a) for a in adapters]
    if not sources:
        raise SsbError("fold_adapters: no adapters given")
    configs: list[dict[str, Any]] = []
    blocks: dict[str, list[tuple[Any, Any]]] = {}  # module key prefix -> [(A, s*B)] in order
    for src in sources:
        ranks = check_adapter(src)
        cfg = read_adapter_config(src)
        _check_supported_config(cfg, src / ADAPTER_CONFIG)
        configs.append(cfg)
        try:
            tensors = load_file(str(src / ADAPTER_WEIGHTS))
        except Exception as exc:  # safetensors' own error types
            raise SsbError(f"{src / ADAPTER_WEIGHTS}: cannot read safetensors ({exc})") from None
        pairs: dict[str, dict[str, Any]] = {}
        for key, value in tensors.items():
            m = _ADAPTER_KEY.match(key)
            if m is None:
                raise SsbError(f"{src / ADAPTER_WEIGHTS}: tensor {key!r} is not a LoRA A/B "
                               "weight; only plain LoRA adapters can be folded")
            pairs.setdefault(m["module"], {})[m["ab"]] = value
        for module, ab in pairs.items():
            name = module.removeprefix("base_model.model.")
            scale = _peft_module_scale(cfg, name, ranks[name])
            a = np.asarray(ab["A"], dtype=np.float64)
            b = np.asarray(ab["B"], dtype=np.float64) * scale
            blocks.setdefault(module, []).append((a, b))

    out_tensors: dict[str, Any] = {}
    folded_ranks: dict[str, int] = {}
    for module, parts in sorted(blocks.items()):
        a = np.concatenate([p[0] for p in parts], axis=0)
        b = np.concatenate([p[1] for p in parts], axis=1)
        out_tensors[f"{module}.lora_A.weight"] = np.ascontiguousarray(a, dtype=np.float32)
        out_tensors[f"{module}.lora_B.weight"] = np.ascontiguousarray(b, dtype=np.float32)
        folded_ranks[module.removeprefix("base_model.model.")] = a.shape[0]

    counts: dict[int, int] = {}
    for rank in folded_ranks.values():
        counts[rank] = counts.get(rank, 0) + 1
    rank = max(counts, key=lambda k: (counts[k], k))
    # Scale 1 for every module: alpha = rank (a module of another rank gets its own pair).
    pattern = {re.escape(name): r for name, r in sorted(folded_ranks.items()) if r != rank}
    leaves = sorted({name.rsplit(".", 1)[-1] for name in folded_ranks})
    cfg = dict(configs[0])
    cfg.update({"r": rank, "lora_alpha": rank, "use_rslora": False, "rank_pattern": pattern,
                "alpha_pattern": dict(pattern), "target_modules": leaves,
                "layers_to_transform": None, "layers_pattern": None, "lora_dropout": 0.0,
                "inference_mode": True})
    stamp = {"adapters": [str(s.resolve()) for s in sources],
             "fingerprints": [adapter_fingerprint(s) for s in sources],
             "ranks": [int(c.get("r", 8)) for c in configs], "rank": rank}

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        save_file(out_tensors, str(tmp / ADAPTER_WEIGHTS), metadata={"format": "pt"})
        from ssb.journal import atomic_write_json

        atomic_write_json(tmp / ADAPTER_CONFIG, cfg)
        atomic_write_json(tmp / FOLD_STAMP, stamp)
        with open(tmp / ADAPTER_WEIGHTS, "rb+") as f:
            os.fsync(f.fileno())
        from ssb.journal import output_mode

        mode = output_mode()  # mkdtemp's 0700 -> what mkdir gives (x wherever r is)
        os.chmod(tmp, mode | ((mode & 0o444) >> 2))
        if out_dir.exists():  # a stale fold: moved aside, then removed
            old = out_dir.with_name(f".{out_dir.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out_dir, old)
            shutil.rmtree(old, ignore_errors=True)
        os.replace(tmp, out_dir)
    except OSError as exc:
        from ssb.errors import DiskFull, disk_full_cause

        if disk_full_cause(exc) is not None:
            raise DiskFull(str(out_dir)) from exc
        raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def ensure_folded_adapter(adapters: list[str | os.PathLike], out_dir: str | os.PathLike) -> Path:
    """:func:`fold_adapters` unless ``out_dir`` already holds the fold of the same adapters (same
    order, same content); so a rerun after a kill never folds twice nor keeps a stale fold."""
    out_dir = Path(out_dir)
    try:
        stamp = json.loads((out_dir / FOLD_STAMP).read_text(encoding="utf-8"))
        if (stamp.get("fingerprints") == [adapter_fingerprint(a) for a in adapters]
                and (out_dir / ADAPTER_WEIGHTS).is_file()):
            return out_dir
    except (OSError, json.JSONDecodeError, AttributeError):
        pass
    return fold_adapters(adapters, out_dir)
