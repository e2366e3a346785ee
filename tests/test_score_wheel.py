"""MER2025 emotion-wheel scorer on the real mapping files (skipped when they are absent)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from esva.errors import EsvaError
from esva.evaluate.mer_files import parse_column, parse_list_mer2025, read_openset
from esva.evaluate.wheel import WHEELS, load_wheel_mapping, map_label, score_wheel

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "mer_reference"
WHEEL_DIR = SHARED / "emotion_wheel"
OV_STORE = SHARED / "mer2024_ov_store"

pytestmark = [
    pytest.mark.shared,
    pytest.mark.skipif(not WHEEL_DIR.is_dir(), reason=f"shared wheel files absent: {WHEEL_DIR}"),
]


@pytest.fixture(scope="module")
def mappings():
    return {source: load_wheel_mapping(WHEEL_DIR, source) for source in ("mer2025", "mer2026")}


def test_spreadsheet_build_matches_the_official_npz(mappings):
    built, npz = mappings["mer2025"], mappings["mer2026"]
    assert built.wheel_maps == npz.wheel_maps
    assert {k: sorted(v) for k, v in built.raw_mapping.items()} == {
        k: sorted(v) for k, v in npz.raw_mapping.items()
    }
    assert len(built.raw_mapping) == 1255  # "253 wheel words -> 1255 words" (MERTools comment)
    assert len(built.format_mapping) == 7386 and len(npz.format_mapping) == 7356
    assert set(npz.format_mapping) <= set(built.format_mapping)
    # the known difference: MER2026 dropped the inflected forms of the "-less" words
    assert "help" in built.format_mapping and "help" not in npz.format_mapping


def _precondition_families(mapping, level: str = "level1"):
    """The wheel facts the hand example relies on, checked on every wheel."""
    for wheel in WHEELS:
        wm = mapping.wheel_maps[wheel][level]
        fam = {
            w: map_label(w, mapping, wm)
            for w in ("happy", "joyful", "sad", "sadness", "angry", "furious", "worried", "xyzzy")
        }
        assert fam["happy"] == fam["joyful"] != ""
        assert fam["angry"] == fam["furious"] != ""
        assert fam["sad"] == fam["sadness"] != ""
        assert len({fam["happy"], fam["sad"], fam["angry"]}) == 3
        assert fam["worried"] != "" and fam["xyzzy"] == ""


@pytest.mark.parametrize("source", ["mer2025", "mer2026"])
def test_hand_computable_case(mappings, source):
    mapping = mappings[source]
    _precondition_families(mapping)
    gold = {
        "a": ["happy", "Sad", "angry"],  # P={happy} -> accuracy 1, recall 1/3
        "b": ["angry"],  # P={angry, sad} -> accuracy 1/2, recall 1
        "c": ["xyzzy"],  # no gold word on the wheel -> skipped
        "d": ["worried"],  # every predicted word falls off -> (0, 0)
    }
    pred = {"a": ["joyful"], "b": ["furious", "sadness"], "c": ["happy"], "d": ["xyzzy"]}
    r = score_wheel(gold, pred, mapping, "level1")
    acc, rec = (1 + 0.5 + 0) / 3, (1 / 3 + 1 + 0) / 3
    assert r["accuracy"] == pytest.approx(acc)
    assert r["recall"] == pytest.approx(rec)
    assert r["fscore"] == pytest.approx(2 * acc * rec / (acc + rec))  # same on every wheel
    assert r["average"] == pytest.approx((acc + rec) / 2)
    assert all(v["n"] == 3 for v in r["per_wheel"].values())


def test_identical_lists_score_one_at_level2(mappings):
    words = {"s1": ["happy", "worried"], "s2": ["angry"]}
    r = score_wheel(words, words, mappings["mer2025"], "level2")
    assert r["accuracy"] == r["recall"] == r["fscore"] == 1.0


def test_bad_level_and_missing_dir(mappings, tmp_path):
    with pytest.raises(EsvaError):
        score_wheel({"a": ["happy"]}, {"a": ["happy"]}, mappings["mer2025"], "level3")
    with pytest.raises(EsvaError, match="not found"):
        load_wheel_mapping(tmp_path / "nope")
    with pytest.raises(EsvaError, match=r"format\.csv"):
        (tmp_path / "w").mkdir()
        for wheel in WHEELS:
            (tmp_path / "w" / f"{wheel}.xlsx").write_bytes(
                (WHEEL_DIR / f"{wheel}.xlsx").read_bytes()
            )
        load_wheel_mapping(tmp_path / "w")


# --- an independent, line-by-line port of MERTools' MER2025 evaluation/wheel.py -------------
def _mertools_string_to_list(text):
    if text == "":
        return []
    if text[0] == "[":
        text = text[1:]
    if text[-1] == "]":
        text = text[:-1]
    return [item.strip() for item in re.split("['\",]", text) if item.strip() not in ["", ","]]


def _mertools_case3(label, format_mapping, raw_mapping, wheel_map):
    if label not in format_mapping:
        return ""
    level1_whole = []
    for fmt in format_mapping[label]:
        for raw in raw_mapping[fmt]:
            level1_whole.append(raw)
    for level1 in sorted(level1_whole):
        if level1 in wheel_map:
            return wheel_map[level1]
    return ""


def _mertools_wheel_metric(name2gt, name2pred, m, level):
    whole_scores = []
    for wheel in WHEELS:
        wheel_map = m.wheel_maps[wheel][level]
        accuracy, recall = [], []
        for name in name2gt:
            gt = [i.lower().strip() for i in _mertools_string_to_list(name2gt[name])]
            gt = {
                x
                for x in (
                    _mertools_case3(i, m.format_mapping, m.raw_mapping, wheel_map) for i in gt
                )
                if x != ""
            }
            pred = [i.lower().strip() for i in _mertools_string_to_list(name2pred[name])]
            pred = {
                x
                for x in (
                    _mertools_case3(i, m.format_mapping, m.raw_mapping, wheel_map) for i in pred
                )
                if x != ""
            }
            if len(gt) == 0:
                continue
            if len(pred) == 0:
                accuracy.append(0)
                recall.append(0)
            else:
                accuracy.append(len(gt & pred) / len(pred))
                recall.append(len(gt & pred) / len(gt))
        precision, rec = np.mean(accuracy), np.mean(recall)
        fscore = 0 if precision + rec == 0 else 2 * (precision * rec) / (precision + rec)
        whole_scores.append([fscore, precision, rec])
    return np.mean(whole_scores, axis=0).tolist()


@pytest.mark.skipif(not OV_STORE.is_dir(), reason=f"shared OV store absent: {OV_STORE}")
@pytest.mark.parametrize("level", ["level1", "level2"])
def test_agrees_with_a_port_of_the_mertools_code(mappings, level):
    gold_cells = read_openset(OV_STORE / "check-openset.csv")
    pred_cells = read_openset(OV_STORE / "predict-openset.csv")
    gold = parse_column(gold_cells, parse_list_mer2025)
    pred = parse_column(pred_cells, parse_list_mer2025)
    for source, mapping in mappings.items():
        fscore, precision, recall = _mertools_wheel_metric(gold_cells, pred_cells, mapping, level)
        r = score_wheel(gold, pred, mapping, level)
        assert (r["fscore"], r["accuracy"], r["recall"]) == (fscore, precision, recall), source
        assert 0.3 < r["fscore"] < 0.8
