"""``esva explain``: one media file -> label and explanation by an LLM from ``esva train-llm``.

A thin layer over :mod:`esva.apps.inference`: the adapter and the extractor its folder's
``extraction.json`` describes are loaded once (:class:`Explainer`); per file the media is
decoded and extracted once, the LM streams are built as in training
(:func:`esva.llm.data.lm_features`), and the speech is transcribed from the same decoded audio
when the model was trained with subtitles.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from esva.apps.inference import SHORT_CLIP_S, analyse_file
from esva.errors import EsvaError
from esva.extract.provenance import extractor_for_model


class Explainer:
    """An LLM adapter and its extractor, loaded once; ``explain(path)`` per file."""

    def __init__(self, model, meta: dict[str, Any], extractor, directory: Path, asr: bool):
        self.model, self.meta, self.extractor = model, meta, extractor
        self.directory, self.asr = Path(directory), asr
        self._transcriber = None

    @classmethod
    def from_pretrained(
        cls, directory: str | Path, *, asr: bool = True, assume_default_extraction: bool = False
    ) -> Explainer:
        from esva.recipes.train_llm import load_trained

        model, meta = load_trained(directory)
        extractor = extractor_for_model(
            directory, meta["streams"], assume_default=assume_default_extraction, asr=asr
        )
        return cls(model, meta, extractor, Path(directory), asr)

    def _transcribe(self, analysis) -> str | None:
        """Whisper tiny.en on the already decoded audio (the prompt's subtitle)."""
        from esva.encoders import create_encoder
        from esva.extract.pipeline import ASR_MODEL

        clip = analysis.audio
        if clip is None or not len(clip.samples):
            return None
        if self._transcriber is None:
            self._transcriber = create_encoder(ASR_MODEL)
        return self._transcriber.transcribe(clip).text.strip() or None

    def explain(
        self, path: str | Path, audio: str | Path | None = None, max_new_tokens: int | None = None
    ) -> dict[str, Any]:
        from esva.llm.data import lm_features
        from esva.llm.parse import label_last_word, label_strict
        from esva.recipes.captions import face_cues, voice_cues

        meta, model = self.meta, self.model
        # The decoded audio is kept for the subtitle; no sync face track (no offset here).
        analysis = analyse_file(self.extractor, path, audio, keep_media=True, sync_track=False)
        extracted = analysis.features
        features = lm_features(extracted.streams, meta)
        if not features:
            raise EsvaError(
                "none of the model's feature streams could be extracted from the file", path
            )
        transcript = extracted.info.get("transcript") or None
        if transcript is None and meta.get("subtitles") and self.asr:
            if analysis.audio is None and analysis.audio_path is not None:
                from esva.media.decode import load_audio

                analysis.features.audio = load_audio(analysis.audio_path, missing_ok=True)
            transcript = self._transcribe(analysis)
        classes = list(meta["classes"])
        sentences = [transcript if meta.get("subtitles") else None]
        recognition = model.generate(
            features, model.prompts("recognition", features, sentences, classes), max_new_tokens=8
        )[0]
        explanation = model.generate(
            features,
            model.prompts("reasoning", features, sentences, classes),
            max_new_tokens=max_new_tokens,
        )[0]
        label = label_strict(recognition, classes)
        from_explanation = label_strict(explanation, classes)
        # Measured cues beside the LM's words, when the model's encoders give them (no speaker
        # baseline here: absolute values).
        cues: dict[str, Any] = {}
        voice, face = extracted.streams.get("prosody"), extracted.streams.get("fer-cnn")
        if voice is not None and (v := voice_cues(voice.features, voice.mask, voice.fps)):
            cues["voice"] = {k: val for k, val in vars(v).items() if val is not None}
        if face is not None and (f := face_cues(face.features, face.mask, face.fps, face.start_s)):
            cues["face"] = vars(f)
        flags = list(analysis.flags)
        if label and from_explanation and label != from_explanation:
            # Two prompts, two answers: say so rather than hide the disagreement.
            flags.append(
                f"the explanation concludes {from_explanation!r}, the recognition {label!r}"
            )
        from esva.apps.inference import extraction_summary

        return {
            "file": str(path),
            # The recognition answer decides; an unparseable one falls back to the explanation's
            # conclusion, then to Emotion-LLaMA's last-word rule.
            "label": label
            or from_explanation
            or label_last_word(
                recognition, classes, "neutral" if "neutral" in classes else classes[0]
            ),
            "explanation": explanation,
            "recognition_answer": recognition,
            "label_from_explanation": from_explanation,
            "classes": classes,
            "streams": sorted(features),
            "transcript": transcript,
            "flags": flags,
            "cues": cues,
            "confident": analysis.duration_s >= SHORT_CLIP_S,
            "extraction": extraction_summary(self.extractor),
            "model": str(self.directory),
        }


def explain_file(
    path: str | Path,
    model_dir: str | Path,
    audio: str | Path | None = None,
    max_new_tokens: int | None = None,
    asr: bool = True,
    assume_default_extraction: bool = False,
) -> dict[str, Any]:
    """Label and explanation of one media file by a model from ``esva train-llm``. To explain
    many files, load once: ``Explainer.from_pretrained(dir)`` then ``.explain(path)``."""
    explainer = Explainer.from_pretrained(
        model_dir, asr=asr, assume_default_extraction=assume_default_extraction
    )
    return explainer.explain(path, audio=audio, max_new_tokens=max_new_tokens)
