"""The one inference path: models loaded once, each file decoded once, the offset measured on
the same decoded streams, and what the data cannot support flagged."""

from __future__ import annotations

from pathlib import Path

import pytest

import esva.media.decode as decode
from esva.apps.inference import Recognizer
from esva.extract.provenance import FORMAT, write_extraction
from esva.model import ESVAModel
from esva.model.config import ESVAConfig
from media_factory import cut_media

TAKE = Path("ravdess_av") / "Actor_01" / "01-01-08-01-01-02-01.mp4"


@pytest.fixture(scope="module")
def clips(shared_data, tmp_path_factory) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("inference")
    src = shared_data / TAKE
    return {
        "take": cut_media(src, work / "take.mp4", 1.5),
        # the soundtrack outlasts the pictures: 1 s of video under 3 s of audio
        "long_audio": cut_media(src, work / "long_audio.mp4", 1.0, 3.0),
        "short": cut_media(src, work / "short.mp4", 0.3),
    }


@pytest.fixture(scope="module")
def shipped() -> Recognizer:
    return Recognizer.from_pretrained(None)  # loaded once for every test below


@pytest.fixture
def decodes(monkeypatch) -> dict[str, int]:
    """How many times the audio and the video of a file are decoded."""
    counts = {"iter_frames": 0, "load_audio": 0}
    for name in counts:
        real = getattr(decode, name)

        def counted(*args, _real=real, _name=name, **kwargs):
            counts[_name] += 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(decode, name, counted)
    return counts


def _visual_model(directory: Path, faces: str = "haar", fps: float = 25.0) -> Path:
    """A small untrained audio+visual model without the alignment module, so its offset comes
    from the sync space on the model's own face track; with its extraction.json."""
    ESVAModel(
        ESVAConfig(
            audio_dim=10,
            visual_dim=135,
            hidden_dim=16,
            use_alignment=False,
            encoders={"audio": "prosody", "visual": "fer-cnn"},
        )
    ).save_pretrained(directory)
    write_extraction(
        directory,
        {
            "format": FORMAT,
            "encoders": {
                "prosody": {"modality": "audio", "options": {}, "record": None},
                "fer-cnn": {"modality": "visual", "options": {}, "record": None},
            },
            "fps": fps,
            "faces": faces,
            "asr": False,
            "asr_model": None,
            "sample_rate": 16000,
        },
    )
    return directory


def test_audio_only_model_decodes_audio_and_video_once(shipped, clips, decodes):
    pred = shipped.predict(clips["take"])
    # Whisper features and the sync offset share one audio decode; the MTCNN sync track is the
    # only pass over the video (it was two audio decodes and a second open before).
    assert decodes == {"iter_frames": 1, "load_audio": 1}
    assert pred.offset_ms is not None and abs(pred.offset_ms) < 200
    assert "offset measured by the shipped sync heads (esva align)" in pred.flags
    assert pred.confident and pred.face_coverage > 0.9


def test_visual_model_measures_the_offset_on_its_own_haar_track_and_flags_it(
    clips, tmp_path, decodes
):
    recognizer = Recognizer.from_pretrained(_visual_model(tmp_path / "m"))
    pred = recognizer.predict(clips["take"])
    assert decodes == {"iter_frames": 1, "load_audio": 1}
    assert pred.modalities == ["audio", "visual", "joint"]
    assert pred.offset_ms is not None
    assert any("haar loses profile faces" in f for f in pred.flags)
    assert pred.extraction["faces"] == "haar"


def test_mtcnn_track_is_not_flagged_as_haar(clips, tmp_path):
    recognizer = Recognizer.from_pretrained(_visual_model(tmp_path / "m", "mtcnn", 10.0))
    pred = recognizer.predict(clips["take"])
    assert not any("haar" in f for f in pred.flags)
    assert any("the model's mtcnn face track at 10 fps" in f for f in pred.flags)
    assert any("10 fps face track: the sync heads read every frame" in f for f in pred.flags)


def test_face_coverage_is_over_the_whole_span_not_only_the_video(shipped, clips):
    pred = shipped.predict(clips["long_audio"])
    # 1 s of face over a 3 s clip: about a third, not 1.0
    assert pred.face_coverage is not None and 0.2 < pred.face_coverage < 0.45
    assert pred.duration_s == pytest.approx(3.0, abs=0.05)


def test_a_clip_too_short_to_label_is_flagged_not_confident(shipped, clips):
    pred = shipped.predict(clips["short"])
    assert not pred.confident
    assert any(f.startswith("clip too short to label") for f in pred.flags)
    assert abs(sum(pred.probabilities.values()) - 1) < 1e-5  # still reported, flagged


def test_predict_cli_text_says_not_confident_and_the_extraction(clips, capsys):
    from esva.cli.main import main

    assert main(["predict", str(clips["short"])]) == 0
    out = capsys.readouterr().out
    assert "not confident" in out and "extraction: whisper-tiny {'layer': 'stack'}" in out
