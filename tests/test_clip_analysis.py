"""One clip analysis per predict: the file decoded once (no probe, no second decode), the
features handed to the model without a training item or collate, and every setting that made
them, the face track's framing included, in the answer's ``extraction``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import esva.apps.inference as inference
import esva.media.decode as decode
import esva.model.inputs as model_inputs
from esva.apps.inference import Recognizer
from esva.data.streams import StreamFeatures
from esva.errors import EsvaError
from esva.extract.clip import ClipAnalysis, analyse_clip
from esva.extract.provenance import EXTRACTION, FORMAT, write_extraction
from esva.media.track import EVERY_FRAME, FaceTrackSettings
from esva.model import ESVAModel
from esva.model.config import ESVAConfig
from esva.model.inputs import clip_frames, collate, forward_frames, window_frames
from media_factory import cut_media, write_voice

TAKE = Path("ravdess_av") / "Actor_01" / "01-01-08-01-01-02-01.mp4"


@pytest.fixture(scope="module")
def take(shared_data, tmp_path_factory) -> Path:
    return cut_media(shared_data / TAKE, tmp_path_factory.mktemp("clip") / "take.mp4", 1.5)


@pytest.fixture(scope="module")
def shipped() -> Recognizer:
    return Recognizer.from_pretrained(None)


@pytest.fixture
def calls(monkeypatch) -> dict[str, int]:
    """How often the file is opened (probe, load_audio, iter_frames), the clip analysed, and
    the training collate run, while the test runs."""
    counts = {"probe": 0, "load_audio": 0, "iter_frames": 0, "analyse_clip": 0, "collate": 0}

    def counted(module, name):
        real = getattr(module, name)

        def wrapper(*args, **kwargs):
            counts[name] += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapper)

    for name in ("probe", "load_audio", "iter_frames"):
        counted(decode, name)
    counted(inference, "analyse_clip")
    counted(model_inputs, "collate")
    return counts


def _visual_model(directory: Path) -> Path:
    """A small untrained audio+visual model (prosody + fer-cnn, haar at 25 fps)."""
    ESVAModel(
        ESVAConfig(
            audio_dim=10, visual_dim=135, hidden_dim=16, use_alignment=False,
            encoders={"audio": "prosody", "visual": "fer-cnn"},
        )
    ).save_pretrained(directory)  # fmt: skip
    encoders = {
        "prosody": {"modality": "audio", "options": {}, "record": None},
        "fer-cnn": {"modality": "visual", "options": {}, "record": None},
    }
    write_extraction(
        directory,
        {"format": FORMAT, "encoders": encoders, "fps": 25.0, "faces": "haar", "asr": False,
         "asr_model": None, "sample_rate": 16000},
    )  # fmt: skip
    return directory


# ----------------------------------------------------------------------------- decoded once


def test_the_fused_default_decodes_a_video_once(shipped, take, calls):
    """One analysis, one audio decode, one pass over the video (the face expert and the offset
    read the same track), no probe inside, and no training collate on the way to the model."""
    pred, analysis = shipped.predict_with_analysis(take)
    assert isinstance(analysis, ClipAnalysis)
    assert calls == {"probe": 0, "load_audio": 1, "iter_frames": 1, "analyse_clip": 1,
                     "collate": 0}  # fmt: skip
    assert set(pred.per_modality) == {"voice", "face"} and pred.offset_ms is not None
    assert analysis.track is not None and analysis.audio is not None
    assert "whisper-tiny" in analysis.streams


def test_a_visual_model_decodes_once_without_probing(take, tmp_path, calls):
    """A model that tracks faces itself: its track is the clip's one track; the extractor no
    longer probes the file before decoding it."""
    recognizer = Recognizer.from_pretrained(_visual_model(tmp_path / "m"))
    pred = recognizer.predict(take)
    assert calls == {"probe": 0, "load_audio": 1, "iter_frames": 1, "analyse_clip": 1,
                     "collate": 0}  # fmt: skip
    assert "visual" in pred.modalities and pred.offset_ms is not None


def test_esva_predict_reads_the_file_once_after_its_header_check(take, calls, capsys):
    """The CLI checks the file's headers before loading weights (one probe), then the
    analysis decodes each stream once."""
    from esva.cli.main import main

    assert main(["predict", str(take), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["label"]
    assert calls == {"probe": 1, "load_audio": 1, "iter_frames": 1, "analyse_clip": 1,
                     "collate": 0}  # fmt: skip


def test_esva_predict_hands_the_encoders_own_stream_to_the_model(tmp_path, monkeypatch, capsys):
    """One container from the encoder to the model: in one ``esva predict`` walk (the shipped
    default, a short generated voice), the object the encoder's ``encode`` returned is the very
    object in the clip analysis's streams and in the streams the model's inputs are read from."""
    from esva.cli.main import main
    from esva.data.streams import EncoderRecord
    from esva.encoders.whisper import WhisperAudioEncoder

    returned: list[tuple[str, StreamFeatures]] = []
    analyses: list[ClipAnalysis] = []
    to_model: list[dict[str, StreamFeatures]] = []
    encode, analyse, frames = WhisperAudioEncoder.encode, inference.analyse_clip, clip_frames

    def recorded_encode(self, inputs):
        out = encode(self, inputs)
        returned.append((self.name, out))
        return out

    def recorded_analyse(*args, **kwargs):
        analyses.append(analyse(*args, **kwargs))
        return analyses[-1]

    def recorded_frames(config, streams):
        to_model.append(dict(streams))
        return frames(config, streams)

    monkeypatch.setattr(WhisperAudioEncoder, "encode", recorded_encode)
    monkeypatch.setattr(inference, "analyse_clip", recorded_analyse)
    monkeypatch.setattr(inference, "clip_frames", recorded_frames)
    assert main(["predict", str(write_voice(tmp_path / "v.wav", seconds=1.5)), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["label"]
    assert [name for name, _ in returned] == ["whisper-tiny"]  # encoded once
    (name, stream), (analysis,), (streams,) = returned[0], analyses, to_model
    assert analysis.streams[name] is stream and streams[name] is stream
    assert isinstance(stream, StreamFeatures) and isinstance(stream.record, EncoderRecord)
    assert stream.record_dict() == analysis.settings["encoders"][name]["record"]


def test_explain_measures_on_the_recognisers_analysis(shipped, take, calls):
    """esva explain's measurements (voice cues, adapter frames) read the recogniser's
    analysis: no second decode of the sound for the prosody."""
    from esva.apps.explain import load_voice_reference, measure_clip
    from esva.encoders import create_encoder

    m = measure_clip(shipped, create_encoder("prosody"), load_voice_reference(), take)
    assert calls["analyse_clip"] == 1 and calls["load_audio"] == 1
    assert calls["iter_frames"] == 1
    assert m.audio is not None and "voice" in m.features


def test_wrong_window_settings_fail_before_any_decode(shipped, take, calls):
    with pytest.raises(EsvaError, match="--window and --hop must be positive"):
        shipped.predict(take, window_s=0)
    assert calls["load_audio"] == calls["iter_frames"] == 0


# ----------------------------------------------------------------------------- the settings


def test_the_answer_records_the_face_expert_framing(shipped, take, tmp_path):
    pred = shipped.predict(take)
    framing = pred.extraction["face_track"]
    assert framing == FaceTrackSettings().record()
    assert framing["frames"] == EVERY_FRAME and framing["detector"] == "mtcnn"
    assert (framing["face_size"], framing["grey"], framing["max_side"]) == (64, True, 640)
    assert framing["detect_every"] == 3 and framing["min_face"] == 0.1
    # the fused block still names the expert and which frames of that track it reads
    assert pred.extraction["fusion"]["face_track"] == "mtcnn sync track, detected frames"
    json.dumps(pred.extraction)  # JSON as it is
    # an audio file has no face track to frame
    audio = shipped.predict(write_voice(tmp_path / "v.wav"))
    assert audio.extraction["face_track"] is None and "fusion" in audio.extraction


def test_a_visual_models_track_is_recorded_at_its_own_rate(take, tmp_path):
    pred = Recognizer.from_pretrained(_visual_model(tmp_path / "m")).predict(take)
    framing = pred.extraction["face_track"]
    assert framing["frames"] == "sampled at 25 fps" and framing["detector"] == "haar"
    assert framing["grey"] is True and framing["mouth_size"] == 32


def _default_copy(tmp_path: Path, face_track: dict | None) -> Path:
    from esva.assets import default_model_dir

    copy = tmp_path / "model"
    shutil.copytree(default_model_dir(), copy)
    data = json.loads((copy / EXTRACTION).read_text())
    if face_track is not None:
        data["face_track"] = face_track
    write_extraction(copy, data)
    return copy


def test_extraction_json_frames_the_face_track(shipped, take, tmp_path):
    """extraction.json's face_track decides the framing; its own record reads back to the
    same answer as the defaults, another framing gives another track."""
    base = shipped.predict(take)
    same = Recognizer.from_pretrained(_default_copy(tmp_path / "a", FaceTrackSettings().record()))
    again = same.predict(take)
    assert again.probabilities == base.probabilities
    assert again.extraction["face_track"] == base.extraction["face_track"]
    small = Recognizer.from_pretrained(_default_copy(tmp_path / "b", {"face_size": 48}))
    pred, analysis = small.predict_with_analysis(take)
    assert pred.extraction["face_track"]["face_size"] == 48
    assert analysis.track.crops.shape[1:] == (48, 48, 1)


@pytest.mark.parametrize(
    ("face_track", "fragment"),
    [
        ({"detector": "yolo"}, "unknown detector 'yolo'"),
        ({"face_size": "big"}, "face_size must be a positive number"),
        ({"colour": True}, "unknown setting 'colour'"),
        ({"margin": 0.3}, "margin is 0.3, this esva tracks with 0.1"),
    ],
)
def test_a_bad_face_track_is_one_line(tmp_path, face_track, fragment):
    folder = _default_copy(tmp_path, face_track)
    with pytest.raises(EsvaError, match=fragment) as err:
        Recognizer.from_pretrained(folder)
    assert str(folder / EXTRACTION) in str(err.value) and "\n" not in str(err.value)


# ----------------------------------------------------------------------------- to the model


def _streams(rng) -> dict[str, StreamFeatures]:
    return {
        "a": StreamFeatures(rng.standard_normal((130, 6)).astype(np.float32), 50.0, 0.0),
        "v": StreamFeatures(
            rng.standard_normal((60, 5)).astype(np.float32), 25.0, 0.04,
            mask=np.arange(60) % 7 != 3,
        ),
        "t": StreamFeatures(rng.standard_normal((1, 4)).astype(np.float32), 0.0),
    }  # fmt: skip


def test_the_stream_frames_give_the_models_training_batch_output():
    """The inference entry point (streams -> padded tensors) feeds the model what the training
    path (dataset item -> collate) feeds it: the same logits, τ and valence, clip and windows."""
    torch.manual_seed(0)
    config = ESVAConfig(
        audio_dim=6, visual_dim=5, text_dim=4, hidden_dim=16, use_valence=True,
        encoders={"audio": "a", "visual": "v", "text": "t"},
    )  # fmt: skip
    model = ESVAModel(config).eval()
    frames = clip_frames(config, _streams(np.random.default_rng(0)))
    assert set(frames) == {"audio", "visual", "text"}
    item = {"name": "c", "label": -1, "valence": None}
    for m, (x, mask) in frames.items():
        item[m], item[f"{m}_mask"] = x, mask
    windows = window_frames(config, frames, [(0.0, 1.0), (0.5, 1.5), (3.0, 4.0)])
    assert [span for span, _ in windows] == [(0.0, 1.0), (0.5, 1.5), (3.0, 4.0)]
    assert set(windows[2][1]) == {"text"}  # past the streams' end: only the utterance stream
    win_items = [
        {"name": "w", "label": -1, "valence": None}
        | {k: v for m, pair in w.items() for k, v in ((m, pair[0]), (f"{m}_mask", pair[1]))}
        for _, w in windows
    ]
    for clips, items in (([frames], [item]), ([w for _, w in windows], win_items)):
        ours = forward_frames(model, clips)
        with torch.no_grad():
            batch = collate(items, config.modalities)
            theirs = model({k: v for k, v in batch.items() if k != "name"})
        assert torch.equal(ours.logits, theirs.logits)
        assert torch.equal(ours.valence, theirs.valence)
        assert torch.equal(ours.tau_frames, theirs.tau_frames)
        for key in theirs.present:
            assert torch.equal(ours.present[key], theirs.present[key])
    losses = forward_frames(model, [frames]).losses  # no label: no emotion loss made up
    assert "emo" not in losses and "total" not in losses


def test_analysis_of_in_memory_media_without_a_model(take):
    """Media only (esva align's analysis): the decoded sound and the clip face track."""
    from esva.media.decode import load_audio, load_video

    audio, video = load_audio(take), load_video(take)
    from esva.data.sources import ClipSource

    source = ClipSource("arrays", audio_clip=audio, frames=video)
    analysis = analyse_clip(None, "arrays", source=source, face_track=FaceTrackSettings())
    assert analysis.streams == {} and analysis.audio is audio
    assert analysis.track.mask.mean() > 0.9 and analysis.face_coverage() > 0.9
    assert analysis.settings == {"face_track": FaceTrackSettings().record()}
