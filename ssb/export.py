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

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"

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

        reader = gguf.GGUFReader(ref.location)
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
    if out_path.is_dir():
        raise SsbError(f"GGUF output {out_path} is a directory; name the file to write, e.g. "
                       f"{out_path / (adapter_dir.name + '.gguf')}")
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
    rank: int | list[int] = ranks.pop() if len(ranks) == 1 else sorted(ranks)
    return ExportReport(
        path=str(out_path), architecture=arch, tensors=len(out_tensors), modules=len(pairs),
        layers=len({layer for layer, _ in pairs}), rank=rank, alpha=lora_alpha,
        rescaled_modules=rescaled, base=base_location,
    )


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


def adapter_fingerprint(adapter_dir: str | os.PathLike) -> str:
    """sha256 over the adapter's config and weights (decides when a cached export is stale)."""
    import hashlib

    from ssb.stage import sha256_file

    adapter_dir = Path(adapter_dir)
    h = hashlib.sha256()
    for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
        p = adapter_dir / name
        h.update(name.encode())
        h.update(sha256_file(p).encode() if p.exists() else b"-")
    return h.hexdigest()


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
