"""``esva captions``: MERR-style coarse and fine captions for a feature store's clips."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def captions(
    store: Annotated[Path, typer.Option("--store", help="Feature store with labels.csv.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the MERR files.")],
    labels: Annotated[str, typer.Option(help="Clip table inside --store.")] = "labels.csv",
    voice: Annotated[str, typer.Option(help="Prosody stream folder ('' for none).")] = "prosody",
    face: Annotated[str, typer.Option(help="fer-cnn stream folder ('' for none).")] = "fer-cnn",
    rewrite: Annotated[
        bool, typer.Option("--rewrite", help="Let SmolLM2 rewrite the reasoning captions.")
    ] = False,
) -> None:
    """Measure voice and face cues in a store and write MERR coarse/fine caption files."""
    from esva.data.clip_table import read_clip_table
    from esva.errors import EsvaError
    from esva.recipes.captions import LMRewriter, build_merr, cues_from_store, write_merr

    clips = read_clip_table(store / labels)
    voice_dir = voice if voice and (store / voice).is_dir() else None
    face_dir = face if face and (store / face).is_dir() else None
    if voice_dir is None and face_dir is None:
        raise EsvaError("the store has neither a prosody nor a fer-cnn folder", store)
    cues = cues_from_store(store, clips, voice=voice_dir, face=face_dir)
    classes = sorted({c.label for c in clips if c.label})
    rewriter = LMRewriter(classes=classes) if rewrite else None
    paths = write_merr(out, *build_merr(cues, rewriter))
    typer.echo(f"{len(cues)} clips -> {', '.join(str(p) for p in paths.values())}")
