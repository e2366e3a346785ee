"""The label-map layer: every corpus label has a declared fate, and drops are counted."""

from __future__ import annotations

import logging

import pytest

from esva.data.datasets import get_adapter, list_adapters
from esva.data.label_mapping import DROP, LABEL_MAPS, MER6, classes_for, map_labels
from esva.data.sources import ClipSource
from esva.errors import EsvaError


def _clips(labels, corpus="x"):
    return [ClipSource(name=f"{corpus}{i}", label=label) for i, label in enumerate(labels)]


def test_every_adapter_with_classes_has_a_complete_table():
    for name in list_adapters():
        classes = get_adapter(name).classes
        if not classes:
            continue  # the generic CSV has no fixed label set
        table = LABEL_MAPS[name]
        assert set(table) == set(classes), name
        assert all(v is DROP or v in MER6 for v in table.values()), name
        # every MER class a corpus can supply is reachable, and nothing maps outside MER6
        assert {v for v in table.values() if v is not DROP} <= set(MER6)


def test_declared_decisions():
    assert LABEL_MAPS["ravdess"]["fearful"] == "worried"
    assert LABEL_MAPS["ravdess"]["calm"] == "neutral"
    assert LABEL_MAPS["ravdess"]["disgust"] is DROP
    assert LABEL_MAPS["emodb"]["boredom"] is DROP
    assert LABEL_MAPS["meld"]["joy"] == "happy" and LABEL_MAPS["meld"]["fear"] == "worried"
    assert LABEL_MAPS["merr"]["fear"] == "worried" and LABEL_MAPS["merr"]["doubt"] is DROP
    kept, dropped = map_labels(_clips(["fear", "disgust"]), "CREMA-D")  # aliases resolve
    assert [c.label for c in kept] == ["worried"] and dropped == {"disgust": 1}


def test_map_labels_counts_drops_and_keeps_the_source_label(caplog):
    clips = _clips(["fearful", "disgust", "calm", "disgust", None, "surprised"])
    with caplog.at_level(logging.WARNING):
        kept, dropped = map_labels(clips, "ravdess")
    assert dropped == {"disgust": 2}
    assert len(kept) + sum(dropped.values()) == len(clips)  # nothing lost without a count
    assert [c.label for c in kept] == ["worried", "neutral", None, "surprise"]
    assert kept[0].extra["source_label"] == "fearful"
    assert clips[0].label == "fearful" and "source_label" not in clips[0].extra  # copies
    assert "dropped 2 clips" in caplog.text and "disgust: 2" in caplog.text


def test_identity_target_keeps_corpus_classes():
    clips = _clips(["calm", "disgust", "neutral"])
    kept, dropped = map_labels(clips, "ravdess", target="identity")
    assert [c.label for c in kept] == ["calm", "disgust", "neutral"] and dropped == {}
    assert classes_for("ravdess", "identity") == get_adapter("ravdess").classes
    assert len(classes_for("ravdess", "identity")) == 8
    assert classes_for("meld") == MER6
    with pytest.raises(EsvaError, match="no fixed class list"):
        classes_for("generic", "identity")


def test_unknown_label_corpus_or_target_is_one_line_error(tmp_path):
    clip = ClipSource(name="c1", audio=tmp_path / "c1.wav", label="joy")
    with pytest.raises(EsvaError, match=r"c1\.wav: clip c1: label 'joy' is not in the ravdess"):
        map_labels([clip], "ravdess")
    with pytest.raises(EsvaError, match="not in the ravdess"):
        map_labels([clip], "ravdess", target="identity")
    with pytest.raises(EsvaError, match="no label table from 'mystery'"):
        map_labels([clip], "mystery")
    with pytest.raises(EsvaError, match="unknown label target"):
        map_labels([clip], "meld", target="mer7")


def test_custom_table_for_a_generic_corpus():
    kept, dropped = map_labels(
        _clips(["glad", "mad", "meh"]),
        "generic",
        table={"glad": "happy", "mad": "angry", "meh": None},
    )
    assert [c.label for c in kept] == ["happy", "angry"] and dropped == {"meh": 1}
    with pytest.raises(EsvaError, match="not MER classes"):
        map_labels(_clips(["glad"]), "generic", table={"glad": "joyful"})
