"""ssb: Semantic Soft Bootstrapping — RL-free self-distillation for reasoning."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ssb")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+unknown"
