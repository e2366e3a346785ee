"""Extraction provenance: a store's settings travel into the model folder and back into
``esva predict``, so a model is served with the features it was trained on."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from esva.cli.main import main
from esva.errors import EsvaError
from esva.extract.feature_store import FeatureStore
from esva.extract.pipeline import ExtractConfig
from esva.extract.provenance import (
    EXTRACTION,
    extractor_for_model,
    model_extraction,
    read_extraction,
    write_extraction,
)
from media_factory import cut_media

TAKE = Path("ravdess_av") / "Actor_01" / "01-01-08-01-01-02-01.mp4"


def _cli(args: list[str], capsys) -> tuple[int, str, str]:
    rc = main(args)
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.fixture(scope="module")
def trained(shared_data, tmp_path_factory):
    """`esva extract --fps 10 --faces mtcnn` on a short real take (under two labels: a store
    needs two classes), then `esva train` on it: (work folder, clip, model folder)."""
    work = tmp_path_factory.mktemp("provenance")
    clip = cut_media(shared_data / TAKE, work / "take.mp4", 1.5)
    (work / "clips.csv").write_text(
        "path,name,label,split\ntake.mp4,take_a,happy,train\ntake.mp4,take_b,sad,train\n"
    )
    feats = work / "feats"
    args = ["extract", "--data", str(work / "clips.csv"), "--out", str(feats)]
    args += ["--audio", "prosody", "--visual", "fer-cnn", "--fps", "10", "--faces", "mtcnn"]
    assert main([*args, "--quiet"]) == 0
    (work / "run.yaml").write_text(
        yaml.safe_dump(
            {
                "model": {"audio_dim": 10, "visual_dim": 135, "hidden_dim": 16},
                "data": {"root": "feats", "streams": {"audio": "prosody", "visual": "fer-cnn"}},
                "train": {"epochs": 2, "batch_size": 2, "progress": False, "cpu": True},
            }
        )
    )
    run = work / "runs" / "x"
    assert main(["train", "--config", str(work / "run.yaml"), "--out", str(run)]) == 0
    return work, clip, run / "best"


def test_extract_train_predict_keeps_the_extraction_settings(trained, capsys):
    """THE acceptance test: the model is served with 10 fps MTCNN faces, as it was trained,
    and its probabilities on the raw file equal those on the store's own features."""
    from esva.model import ESVAModel
    from esva.model.inputs import FeatureDataset, collate

    work, clip, best = trained
    recorded = read_extraction(best)
    assert (recorded["fps"], recorded["faces"]) == (10.0, "mtcnn")
    assert recorded["encoders"]["fer-cnn"]["modality"] == "visual"
    assert recorded["encoders"]["prosody"]["record"]["name"] == "prosody"
    rc, out, err = _cli(["predict", "--model", str(best), str(clip), "--json"], capsys)
    assert rc == 0, err
    pred = json.loads(out)
    assert pred["extraction"]["fps"] == 10 and pred["extraction"]["faces"] == "mtcnn"
    assert set(pred["extraction"]["encoders"]) == {"prosody", "fer-cnn"}
    assert pred["modalities"] == ["audio", "visual", "joint"]

    model = ESVAModel.from_pretrained(best).eval()
    streams = dict(model.config.encoders)
    ds = FeatureDataset(work / "feats", model.config, "labels.csv", streams)
    item = next(ds[i] for i in range(len(ds)) if ds[i]["name"] == "take_a")
    batch = collate([item], model.config.modalities)
    with torch.no_grad():
        probs = model({k: v for k, v in batch.items() if k not in ("name", "label")})
    expected = dict(zip(model.config.classes, probs.probabilities[0].tolist(), strict=True))
    for label, p in expected.items():
        assert pred["probabilities"][label] == pytest.approx(p, abs=1e-5), label


def test_haar_at_25_fps_would_have_given_other_features(trained):
    """Why it matters: the defaults the old `esva predict` used make other visual features."""
    from esva.data.sources import ClipSource
    from esva.data.streams import read_stream
    from esva.extract.pipeline import FeatureExtractor

    work, clip, best = trained
    stored = read_stream(work / "feats" / "fer-cnn" / "take_a.safetensors")
    served = extractor_for_model(best).extract(ClipSource("c", video=clip))
    assert np.allclose(served.streams["fer-cnn"].features, stored.features, atol=1e-5)
    default = FeatureExtractor(ExtractConfig(audio=[], visual=["fer-cnn"]))
    other = default.extract(ClipSource("c", video=clip)).streams["fer-cnn"]
    assert other.fps == 25.0 and other.features.shape != stored.features.shape


def test_model_folder_without_extraction_json(trained, tmp_path, capsys):
    _, clip, best = trained
    bare = tmp_path / "bare"
    shutil.copytree(best, bare)
    (bare / EXTRACTION).unlink()
    rc, _, err = _cli(["predict", "--model", str(bare), str(clip), "--json"], capsys)
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err
    assert str(bare / EXTRACTION) in lines[0] and "--assume-default-extraction" in lines[0]
    args = ["predict", "--model", str(bare), str(clip), "--json", "--assume-default-extraction"]
    rc, out, err = _cli(args, capsys)
    assert rc == 0, err
    x = json.loads(out)["extraction"]
    assert x["assumed_default"] and (x["fps"], x["faces"]) == (25.0, "haar")


def test_a_different_whisper_layer_recorded_is_a_one_line_error(tmp_path, capsys):
    from esva.assets import default_model_dir

    copy = tmp_path / "model"
    shutil.copytree(default_model_dir(), copy)
    data = json.loads((copy / EXTRACTION).read_text())
    data["encoders"]["whisper-tiny"]["record"]["layer"] = "last"  # trained on other features
    write_extraction(copy, data)
    with pytest.raises(EsvaError, match=r"extraction\.json.*layer 'stack' here.*'last'"):
        extractor_for_model(copy, {"audio": "whisper-tiny"})
    data["encoders"]["whisper-tiny"]["record"]["layer"] = "stack"
    data["encoders"]["whisper-tiny"]["record"]["weights_sha256"] = "0" * 64
    write_extraction(copy, data)
    media = tmp_path / "a.wav"
    import soundfile as sf

    sf.write(media, np.zeros(16000, np.float32), 16000)
    rc, _, err = _cli(["predict", "--model", str(copy), str(media)], capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "weights_sha256" in err


def test_store_refuses_clips_with_other_settings_naming_the_difference(tmp_path):
    store = FeatureStore(tmp_path / "s")
    base = ExtractConfig(audio=["whisper-tiny"], visual=[], encoder_options={})
    store.root.mkdir()
    store.write_settings(
        ExtractConfig(audio=["whisper-tiny"], visual=[], encoder_options={"whisper-tiny": {}}), []
    )
    store.check_settings(base)  # same settings: fine
    store.check_settings(ExtractConfig(audio=["whisper-tiny", "prosody"], visual=[]))  # added
    layer = ExtractConfig(
        audio=["whisper-tiny"], visual=[], encoder_options={"whisper-tiny": {"layer": "2"}}
    )
    with pytest.raises(EsvaError, match=r"extract\.json.*whisper-tiny options \{\}.*'layer'"):
        store.check_settings(layer)
    with pytest.raises(EsvaError, match="faces='haar', not 'mtcnn'"):
        store.check_settings(ExtractConfig(audio=["whisper-tiny"], visual=[], faces="mtcnn"))
    with pytest.raises(EsvaError, match=r"fps=25\.0, not 10"):
        store.check_settings(ExtractConfig(audio=["whisper-tiny"], visual=[], fps=10))


def test_model_extraction_keeps_only_what_the_model_reads(tmp_path):
    store = FeatureStore(tmp_path)
    config = ExtractConfig(
        audio=["whisper-tiny", "prosody"],
        visual=["fer-cnn"],
        fps=10,
        faces="mtcnn",
        encoder_options={"whisper-tiny": {"layer": "2"}},
    )
    store.write_settings(config, [])
    audio_only = model_extraction(tmp_path, {"audio": "whisper-tiny+prosody"})
    assert set(audio_only["encoders"]) == {"whisper-tiny", "prosody"}
    assert audio_only["encoders"]["whisper-tiny"]["options"] == {"layer": "2"}
    assert audio_only["fps"] is None and audio_only["faces"] is None  # no visual stream
    both = model_extraction(tmp_path, {"audio": "prosody", "visual": "fer-cnn"})
    assert (both["fps"], both["faces"]) == (10, "mtcnn")
    unknown = model_extraction(tmp_path / "nowhere", {"audio": "prosody"})
    (tmp_path / "m").mkdir()
    write_extraction(tmp_path / "m", unknown)  # a model trained on a store without settings
    with pytest.raises(EsvaError, match="does not record how 'prosody' was extracted"):
        extractor_for_model(tmp_path / "m", {"audio": "prosody"}, pretrained=False)
    assumed = extractor_for_model(
        tmp_path / "m", {"audio": "prosody"}, assume_default=True, pretrained=False
    )
    assert assumed.config.audio == ["prosody"]
