"""``ssb export``: a peft LoRA adapter as a llama.cpp GGUF LoRA adapter (llama.cpp, Ollama)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ssb.commands._common import config_option, emit_json


def register(app: typer.Typer) -> None:
    @app.command("export")
    def export(
        adapter: Path = typer.Option(..., "--adapter", help="peft LoRA adapter directory "
                                     "(adapter_config.json + adapter_model.safetensors)."),
        gguf: Path = typer.Option(..., "--gguf", help="Output GGUF LoRA adapter file."),
        base: Optional[str] = typer.Option(
            None, "--base", help="Base model: a .gguf file, an HF directory or 'default'. "
            "Gives the architecture and (for a .gguf) the shapes to check against. "
            "Default: the adapter's base_model_name_or_path when it is a local path."),
        json_out: bool = typer.Option(False, "--json", help="Print the export report as JSON."),
        config: Optional[Path] = config_option(),
    ) -> None:
        """Convert a peft LoRA adapter into llama.cpp's GGUF LoRA-adapter format.

        Load it next to the base GGUF: llama-cpp-python `Llama(model_path=BASE,
        lora_path=OUT)`, `llama-cli -m BASE --lora OUT`, or Ollama's `ADAPTER OUT`.
        Examples:\n
          ssb export --adapter runs/d/adapter --gguf runs/d/adapter.gguf\n
          ssb export --adapter runs/d/adapter --gguf student-lora.gguf --base default
        """
        from ssb.export import export_lora_to_gguf

        report = export_lora_to_gguf(adapter, gguf, base=base)
        if json_out:
            emit_json(report.to_dict())
            return
        typer.echo(f"wrote {report.path}: {report.architecture} LoRA, rank {report.rank}, "
                   f"alpha {report.alpha:g}, {report.modules} modules over {report.layers} "
                   f"layers ({report.tensors} tensors)")
