"""``ssb export``: a peft LoRA adapter as a llama.cpp GGUF LoRA adapter (llama.cpp, Ollama).

The flags are :class:`ExportConfig`'s fields."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import typer

from ssb.commands._common import emit_json
from ssb.options import StageConfig, option

DOC = """Convert a peft LoRA adapter into llama.cpp's GGUF LoRA-adapter format.

Load it next to the base GGUF: llama-cpp-python `Llama(model_path=BASE, lora_path=OUT)`, \
`llama-cli -m BASE --lora OUT`, or Ollama's `ADAPTER OUT`.

Examples:\n
  ssb export --adapter runs/d/adapter --gguf runs/d/adapter.gguf\n
  ssb export --adapter runs/d/adapter --gguf student-lora.gguf --base default
"""


@dataclass
class ExportConfig(StageConfig):
    """What ``ssb export`` takes: its flags and the keys of its ``--config`` file."""

    COMMAND: ClassVar[str] = "export"

    adapter: Path = option(metavar="PATH", help="peft LoRA adapter directory "
                           "(adapter_config.json + adapter_model.safetensors).")
    gguf: Path = option(metavar="PATH", help="Output GGUF LoRA adapter file.")
    base: str | None = option(None, help="Base model: a .gguf file, an HF directory or "
                              "'default'. Gives the architecture and (for a .gguf) the shapes "
                              "to check against. Default: the adapter's base_model_name_or_path "
                              "when it is a local path.")


def register(app: typer.Typer) -> None:
    from ssb.commands._common import stage_command

    stage_command(app, "export", ExportConfig, _export, doc=DOC, extra=[
        ("json_out", bool, typer.Option(False, "--json",
                                        help="Print the export report as JSON."))])


def _export(config: ExportConfig, json_out: bool) -> None:
    adapter, gguf, base = config.adapter, config.gguf, config.base
    from ssb.export import export_lora_to_gguf

    report = export_lora_to_gguf(adapter, gguf, base=base)
    if json_out:
        emit_json(report.to_dict())
        return
    typer.echo(f"wrote {report.path}: {report.architecture} LoRA, rank {report.rank}, "
               f"alpha {report.alpha:g}, {report.modules} modules over {report.layers} "
               f"layers ({report.tensors} tensors)")
