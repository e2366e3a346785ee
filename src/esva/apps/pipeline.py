"""The Python API: ``esva.pipeline(task)`` -> a :class:`Pipeline` loaded once, called per clip.

Shaped like transformers' ``pipeline(task)`` and pyannote's ``Pipeline.from_pretrained``::

    pipe = esva.pipeline("emotion")                    # the shipped default, loaded once
    result = pipe("clip.mp4")                          # a path ...
    result = pipe(waveform, sample_rate=16000)         # ... or arrays (or bytes)
    print(result.label, result.probabilities)          # a typed result (results.py)

Each call is ``preprocess`` (the input -> one :class:`ClipInput`), ``_forward`` (the app's
load-once class: :class:`esva.apps.inference.Recognizer`, the sync space of ``esva align``,
``esva explain``'s explainers) and ``postprocess`` (its answer -> the typed result whose
``to_dict()`` is the CLI's JSON). Nothing is re-implemented here: a pipeline answers exactly
what the command answers.

Inputs: a path (``str`` / ``Path``); ``bytes`` (written to a temporary file whose suffix is
sniffed from the content, removed after the call); or arrays, read in memory through the same
extraction as a decoded file (:mod:`esva.media.arrays`): ``pipe(waveform, sample_rate=sr)``
with a ``(n,)`` or ``(channels, n)`` float waveform, and ``pipe(frames=..., fps=...,
waveform=..., sample_rate=...)`` with ``(n, height, width, 3)`` uint8 RGB frames.

``progress``: a callback ``progress(stage, fraction)`` told ``preprocess`` (0.0), ``forward``
(0.1) and ``postprocess`` (0.9) as each starts and ``done`` (1.0) at the end.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

from esva.apps.results import AlignResult, EmotionResult, explain_result
from esva.data.sources import ClipSource
from esva.errors import EsvaError
from esva.tasks import (
    ADAPTER_TASKS,
    DEFAULT_EXPLAIN_TASK,
    EXPLAIN_TASKS,
    PIPELINE_TASKS,
    check_task,
)

Progress = Callable[[str, float], None]
ARRAY_NAME = "<array>"  # what a result's ``file`` says for arrays
BYTES_NAME = "<bytes>"  # ... and for bytes


@dataclass
class ClipInput:
    """One clip as a pipeline reads it: a file to decode, or media already in memory."""

    name: str  # what the result's ``file`` says
    path: Path | None = None  # a media file (a temporary one for bytes)
    audio: Path | None = None  # a separate audio file for a silent video
    source: ClipSource | None = None  # in-memory media (arrays)
    temporary: Path | None = None  # removed by close()

    def close(self) -> None:
        if self.temporary is not None:
            self.temporary.unlink(missing_ok=True)
            self.temporary = None


def _is_array(value: Any) -> bool:
    return (hasattr(value, "shape") and hasattr(value, "dtype")) or isinstance(value, list)


def read_input(
    inputs: Any = None,
    *,
    audio: str | os.PathLike | None = None,
    waveform: Any = None,
    sample_rate: int | None = None,
    frames: Any = None,
    fps: float | None = None,
    name: str | None = None,
) -> ClipInput:
    """Any supported input -> :class:`ClipInput` (one-line :class:`EsvaError` on a bad one)."""
    if isinstance(inputs, dict):  # {"waveform": ..., "sample_rate": ..., "frames": ..., ...}
        allowed = {"waveform", "sample_rate", "frames", "fps", "audio", "name"}
        if set(inputs) - allowed:
            raise EsvaError(
                f"unknown input keys {', '.join(sorted(set(inputs) - allowed))} "
                f"(use {', '.join(sorted(allowed))})"
            )
        return read_input(
            None,
            audio=inputs.get("audio", audio),
            waveform=inputs.get("waveform", waveform),
            sample_rate=inputs.get("sample_rate", sample_rate),
            frames=inputs.get("frames", frames),
            fps=inputs.get("fps", fps),
            name=inputs.get("name", name),
        )
    if inputs is not None and (waveform is not None or frames is not None):
        if _is_array(inputs) and waveform is None:
            waveform, inputs = inputs, None
        else:
            raise EsvaError("give one input: a path, bytes, or waveform/frames arrays, not both")
    if audio is not None and (inputs is None or _is_array(inputs)):
        raise EsvaError("audio= (a separate audio file) goes with a video file's path or bytes")
    if audio is not None and not Path(audio).is_file():
        raise EsvaError("file not found", audio)
    separate = Path(audio) if audio is not None else None
    if isinstance(inputs, str | os.PathLike):
        path = Path(inputs)
        if not path.is_file():
            raise EsvaError("file not found" if not path.exists() else "not a file", path)
        return ClipInput(str(path) if name is None else name, path, separate)
    if isinstance(inputs, bytes | bytearray | memoryview):
        return _bytes_input(bytes(inputs), name or BYTES_NAME, separate)
    if inputs is not None and not _is_array(inputs):
        raise EsvaError(
            f"cannot read a {type(inputs).__name__} as media: give a path, bytes, "
            "pipe(waveform, sample_rate=...) or pipe(frames=..., fps=...)"
        )
    if inputs is not None:
        waveform = inputs
    if waveform is None and frames is None:
        raise EsvaError("no input: give a path, bytes, or waveform/frames arrays")
    from esva.media.arrays import audio_from_array, frames_from_array

    if waveform is None and sample_rate is not None:
        raise EsvaError("sample_rate= was given without a waveform")
    if frames is None and fps is not None:
        raise EsvaError("fps= was given without frames")
    clip = audio_from_array(waveform, sample_rate) if waveform is not None else None
    video = frames_from_array(frames, fps) if frames is not None else None
    label = name or ARRAY_NAME
    return ClipInput(label, source=ClipSource(name=label, audio_clip=clip, frames=video))


def _bytes_input(data: bytes, name: str, audio: Path | None) -> ClipInput:
    """``data`` in a temporary file whose suffix says what it holds (sniffed from the magic
    numbers, then checked by PyAV: a video container without a picture is named as audio, so
    the apps read it as an audio file)."""
    from esva.data.sources import VIDEO_SUFFIXES
    from esva.media.arrays import sniff_suffix
    from esva.media.decode import probe

    suffix = sniff_suffix(data)
    handle, raw = tempfile.mkstemp(prefix="esva-input-", suffix=suffix)
    tmp = Path(raw)
    with os.fdopen(handle, "wb") as out:
        out.write(data)
    try:
        info = probe(tmp)
        if suffix in VIDEO_SUFFIXES and not info.has_video and audio is None:
            tmp = tmp.rename(tmp.with_suffix(".m4a"))
    except EsvaError as err:
        tmp.unlink(missing_ok=True)
        raise EsvaError(str(err).replace(str(tmp), name)) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return ClipInput(name, tmp, audio, temporary=tmp)


def _scrub(value: Any, old: str, new: str) -> Any:
    """``old`` (a temporary path) replaced by ``new`` (the input's name) in every string."""
    if isinstance(value, str):
        return value.replace(old, new)
    if isinstance(value, dict):
        return {k: _scrub(v, old, new) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v, old, new) for v in value]
    return value


class Pipeline:
    """A task's model loaded once; ``pipe(inputs, **options) -> typed result`` per clip.

    Subclasses set :attr:`task` and implement :meth:`from_pretrained`, :meth:`_forward` and
    :meth:`postprocess`; :meth:`__call__` and :meth:`preprocess` are shared.
    """

    task: ClassVar[str] = ""

    def __init__(self, model: Any, *, progress: Progress | None = None) -> None:
        self.model = model
        self.progress = progress

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike | None = None, **options: Any) -> Self:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(task={self.task!r}, model={self.model_name!r})"

    @property
    def model_name(self) -> str:
        return str(getattr(self.model, "name", "") or type(self.model).__name__)

    def _tell(self, progress: Progress | None, stage: str, fraction: float) -> None:
        hook = progress or self.progress
        if hook is not None:
            hook(stage, fraction)

    def __call__(
        self,
        inputs: Any = None,
        *,
        audio: str | os.PathLike | None = None,
        waveform: Any = None,
        sample_rate: int | None = None,
        frames: Any = None,
        fps: float | None = None,
        name: str | None = None,
        progress: Progress | None = None,
        **options: Any,
    ) -> Any:
        """The typed result for one clip; ``options`` go to :meth:`_forward` (per task)."""
        self._tell(progress, "preprocess", 0.0)
        clip = self.preprocess(
            inputs,
            audio=audio,
            waveform=waveform,
            sample_rate=sample_rate,
            frames=frames,
            fps=fps,
            name=name,
        )
        try:
            self._tell(progress, "forward", 0.1)
            raw = self._forward(clip, **options)
            self._tell(progress, "postprocess", 0.9)
            result = self.postprocess(raw, clip)
        finally:
            clip.close()
        self._tell(progress, "done", 1.0)
        return result

    def preprocess(self, inputs: Any = None, **kw: Any) -> ClipInput:
        return read_input(inputs, **kw)

    def _forward(self, clip: ClipInput, **options: Any) -> Any:
        raise NotImplementedError

    def postprocess(self, raw: Any, clip: ClipInput) -> Any:
        raise NotImplementedError

    @staticmethod
    def _clean(data: dict[str, Any], clip: ClipInput) -> dict[str, Any]:
        """The answer's dict with the temporary file's path replaced by the input's name."""
        if clip.temporary is None:
            return data
        return _scrub(data, str(clip.temporary), clip.name)

    @staticmethod
    def _check_options(options: dict[str, Any], allowed: tuple[str, ...], task: str) -> None:
        unknown = sorted(set(options) - set(allowed))
        if unknown:
            raise EsvaError(
                f"unknown option {', '.join(unknown)} for the {task} pipeline "
                f"(it takes {', '.join(allowed)})"
            )


class EmotionPipeline(Pipeline):
    """``esva predict``: emotion, probabilities, timeline and audio-video offset
    (:class:`esva.apps.inference.Recognizer`, plain or fused)."""

    task = "emotion"
    OPTIONS = ("window_s", "hop_s", "measure_offset")

    @classmethod
    def from_pretrained(
        cls,
        directory: str | os.PathLike | None = None,
        *,
        assume_default_extraction: bool = False,
        progress: Progress | None = None,
    ) -> Self:
        """The model folder ``directory`` (from ``esva train``), or None: the shipped default."""
        from esva.apps.inference import Recognizer

        if directory is not None and not Path(directory).is_dir():
            raise EsvaError("model folder not found", directory)
        recognizer = Recognizer.from_pretrained(
            directory, assume_default_extraction=assume_default_extraction
        )
        return cls(recognizer, progress=progress)

    @property
    def classes(self) -> list[str]:
        return list(self.model.classes)

    def _forward(self, clip: ClipInput, **options: Any) -> Any:
        self._check_options(options, self.OPTIONS, self.task)
        window_s, hop_s = options.get("window_s", 2.0), options.get("hop_s", 0.5)
        measure = options.get("measure_offset", True)
        target = clip.path if clip.path is not None else clip.name
        return self.model.predict(
            target, audio=clip.audio, window_s=window_s, hop_s=hop_s, measure_offset=measure,
            source=clip.source,
        )  # fmt: skip

    def postprocess(self, raw: Any, clip: ClipInput) -> EmotionResult:
        result = EmotionResult.from_prediction(raw)
        if clip.temporary is not None:
            result = EmotionResult.from_dict(self._clean(result.to_dict(), clip))
            result.voice_statistics = raw.voice_statistics  # not in the JSON; adapt() reads it
        return result

    def adapt(self, results: list[EmotionResult]) -> list[EmotionResult]:
        """One batch's answers read against the batch (:mod:`esva.apps.adapt`, as ``esva
        predict`` on many files does): from the voice model's ``min_clips`` clips with a voice,
        each voice is read by the batch-adapted head and fused again; otherwise the results
        come back unchanged. ``pipe.adapt([pipe(a), pipe(b), ...])``."""
        from esva.apps.adapt import adapt_results

        return adapt_results(list(results), self.model.model, self.model.fusion)


class AlignPipeline(Pipeline):
    """``esva align``: the audio-video offset from the shipped sync space (or other heads)."""

    task = "align"
    OPTIONS = ("max_offset_ms", "window_s", "detector")

    @classmethod
    def from_pretrained(
        cls, directory: str | os.PathLike | None = None, *, progress: Progress | None = None
    ) -> Self:
        """Sync heads in ``directory`` (``esva align --sync-space``), or None: the shipped."""
        from esva.sync.space import load_sync_space

        return cls(load_sync_space(directory), progress=progress)

    @property
    def model_name(self) -> str:
        return "sync space"

    def _forward(self, clip: ClipInput, **options: Any) -> Any:
        import math

        from esva.sync.clip_media import ClipMedia, ClipMediaConfig, load_clip_media
        from esva.sync.estimate import ClipAlignConfig, align_media

        self._check_options(options, self.OPTIONS, self.task)
        max_offset_ms = float(options.get("max_offset_ms", 500.0))
        window_s = float(options.get("window_s", 1.0))
        detector = options.get("detector", "mtcnn")
        for what, value, lo, hi in (
            ("max_offset_ms", max_offset_ms, 20, 5000), ("window_s", window_s, 0.2, 10),
        ):  # fmt: skip
            if not (math.isfinite(value) and lo <= value <= hi):
                raise EsvaError(f"{what} must be within {lo}-{hi}, got {value}")
        if detector not in ("mtcnn", "haar"):
            raise EsvaError(f"unknown face detector {detector!r} (choose mtcnn or haar)")
        media_config = ClipMediaConfig(detector=detector)
        if clip.source is None:
            media = load_clip_media(clip.path, clip.audio, media_config)
        else:
            media = _array_media(clip, media_config, ClipMedia)
        config = ClipAlignConfig(max_offset_ms=max_offset_ms, window_s=window_s, hop_s=window_s / 2)
        result = align_media(media, self.model, config)
        result.file = clip.name if clip.source is not None else result.file
        return result

    def postprocess(self, raw: Any, clip: ClipInput) -> AlignResult:
        return AlignResult.from_dict(self._clean(raw.to_dict(), clip))


def _array_media(clip: ClipInput, config: Any, media_type: type) -> Any:
    """In-memory waveform + frames -> the sync tool's :class:`ClipMedia` (as
    :func:`esva.sync.clip_media.load_clip_media` makes from a file: the clip's analysis without
    encoders, its sound and its face track)."""
    from esva.extract.clip import analyse_clip

    source = clip.source
    if source.frames is None:
        raise EsvaError("align needs video: give frames=... and fps=... with the waveform")
    if source.audio_clip is None:
        raise EsvaError("align needs the sound: give waveform=... and sample_rate=...")
    analysis = analyse_clip(None, clip.name, source=source, face_track=config, strict=True)
    track = analysis.track
    if not track.mask.any():
        raise EsvaError(
            f"no face found in any of its {len(track.mask)} frames (detector {config.detector})",
            clip.name,
        )
    return media_type(analysis.audio, track, Path(clip.name), Path(clip.name))


class ExplainPipeline(Pipeline):
    """``esva explain``: label, measured cues and an explanation in words. The shipped adapter,
    another adapter folder, a base LM (``llm=``) and an ``esva train-llm`` model are
    configurations of this one pipeline. The wording is sampled with a seed from the input's
    name (as ``esva explain`` seeds it from the file name): give arrays or bytes ``name=`` to
    get the words a file of that name gets."""

    task = "explain"
    OPTIONS = ("task", "max_new_tokens", "samples")

    @classmethod
    def from_pretrained(
        cls,
        directory: str | os.PathLike | None = None,
        *,
        llm: str | None = None,
        recognizer: str | os.PathLike | None = None,
        asr: bool = True,
        assume_default_extraction: bool = False,
        progress: Progress | None = None,
    ) -> Self:
        """``directory``: None (the shipped recogniser and explanation adapter), an explanation
        adapter folder (``adapter.json``, built like the shipped one), or a model folder from
        ``esva train-llm``. ``llm``: a base LM writes the words instead (no adapter)."""
        from esva.apps.explain import CueExplainer, Explainer

        if directory is not None:
            directory = Path(directory)
            if not directory.is_dir():
                raise EsvaError("model folder not found", directory)
            from esva.llm.adapter import ADAPTER_META

            if not (directory / ADAPTER_META).is_file():
                if llm is not None or recognizer is not None:
                    raise EsvaError("llm= and recognizer= are for the default explainer")
                explainer = Explainer.from_pretrained(
                    directory, asr=asr, assume_default_extraction=assume_default_extraction
                )
                return cls(explainer, progress=progress)
            if llm is not None:
                raise EsvaError("an adapter folder and llm= exclude each other (it has its own)")
        adapter = directory if directory is not None else ("default" if llm is None else None)
        explainer = CueExplainer.from_pretrained(
            backbone=llm, recognizer_dir=recognizer, asr=asr, adapter=adapter
        )
        return cls(explainer, progress=progress)

    @property
    def tasks(self) -> tuple[str, ...]:
        """The explanation tasks this configuration answers (:mod:`esva.tasks`)."""
        from esva.apps.explain import CueExplainer

        return EXPLAIN_TASKS if isinstance(self.model, CueExplainer) else ADAPTER_TASKS

    @property
    def model_name(self) -> str:
        return str(getattr(self.model, "backbone", None) or getattr(self.model, "directory", ""))

    def _forward(self, clip: ClipInput, **options: Any) -> Any:
        from esva.apps.explain import CueExplainer

        self._check_options(options, self.OPTIONS, self.task)
        task = check_task(options.get("task", DEFAULT_EXPLAIN_TASK), self.tasks)
        max_new_tokens = options.get("max_new_tokens")
        target = clip.path if clip.path is not None else Path(clip.name)
        extra = {} if clip.source is None else {"source": clip.source}
        if isinstance(self.model, CueExplainer):
            return self.model.explain(
                target, audio=clip.audio, task=task, samples=options.get("samples", 2),
                max_new_tokens=max_new_tokens or 40, **extra,
            )  # fmt: skip
        if "samples" in options:
            raise EsvaError("samples= is for the default explainer, not an esva train-llm model")
        return self.model.explain(target, audio=clip.audio, max_new_tokens=max_new_tokens, **extra)

    def postprocess(self, raw: Any, clip: ClipInput) -> Any:
        data = dict(raw)
        if clip.source is not None:
            data["file"] = clip.name
        return explain_result(self._clean(data, clip))


PIPELINES: dict[str, type[Pipeline]] = {
    "emotion": EmotionPipeline,
    "align": AlignPipeline,
    "explain": ExplainPipeline,
}
assert tuple(PIPELINES) == PIPELINE_TASKS


def pipeline(task: str, model: str | os.PathLike | None = None, **options: Any) -> Pipeline:
    """``esva.pipeline("emotion" | "align" | "explain", model=None, **options)``: the task's
    pipeline, loaded once. ``model``: a folder (None: the shipped default); ``options`` go to
    that pipeline's ``from_pretrained`` (e.g. ``progress=``, ``llm=`` for explain)."""
    if not isinstance(task, str):
        raise EsvaError(f"the task is a name ({', '.join(PIPELINE_TASKS)}), got {task!r}")
    cls = PIPELINES[check_task(task, PIPELINE_TASKS)]
    import inspect

    accepted = [
        p for p in inspect.signature(cls.from_pretrained).parameters if p not in ("directory",)
    ]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise EsvaError(
            f"unknown option {', '.join(unknown)} for esva.pipeline({task!r}) "
            f"(it takes {', '.join(accepted)})"
        )
    return cls.from_pretrained(model, **options)


__all__ = [
    "AlignPipeline",
    "ClipInput",
    "EmotionPipeline",
    "ExplainPipeline",
    "Pipeline",
    "pipeline",
    "read_input",
]
