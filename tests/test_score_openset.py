"""MER2024 open-vocabulary scorer: MERTools' parsers, a hand example, the official reference."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from esva.errors import EsvaError
from esva.evaluate.mer_files import (
    parse_groups_mer2024,
    parse_groups_strict,
    parse_list_mer2024,
    parse_list_mer2025,
    parse_list_strict,
)
from esva.evaluate.openset import score_openset, score_openset_files, synonym_map

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
OV_STORE = SHARED / "mer_reference" / "mer2024_ov_store"
APOSTROPHE = repr(["don't care", "sad"])  # '["don\'t care", \'sad\']', as pandas/str() write it


def test_quote_parser_matches_mertools_string_to_list():
    assert parse_list_mer2024("['happy', 'relieved']") == ["happy", "relieved"]
    assert parse_list_mer2024('["happy","sad"]') == ["happy", "sad"]
    assert parse_list_mer2024("") == [] and parse_list_mer2024("[]") == []
    # the MERTools quirk: an apostrophe inside a word splits it
    assert parse_list_mer2024(APOSTROPHE) == ["don", "t care", "sad"]
    # only the first bracketed list is read, words are not stripped
    assert parse_list_mer2024("x ['a ', 'b'] ['c']") == ["a ", "b"]
    with pytest.raises(ValueError):
        parse_list_mer2024("happy, sad")


def test_strict_parser_keeps_apostrophes_and_rejects_non_lists():
    assert parse_list_strict(APOSTROPHE) == ["don't care", "sad"]
    assert parse_list_strict("") == []
    for bad in ("happy, sad", "[1, 2]", "['a'", "{'a': 1}"):
        with pytest.raises(ValueError):
            parse_list_strict(bad)


def test_mer2025_parser_also_splits_commas_and_strips():
    assert parse_list_mer2025("['happy', ' sad ']") == ["happy", "sad"]
    assert parse_list_mer2025("happy, grossed out,sad") == ["happy", "grossed out", "sad"]
    assert parse_list_mer2025(APOSTROPHE) == ["don", "t care", "sad"]


def test_group_parsers():
    text = "[['joyful', 'happy'], ['sad'], [\"don't care\", 'numb']]"
    assert parse_groups_mer2024(text) == [["joyful", "happy"], ["sad"], ["don", "t care", "numb"]]
    assert parse_groups_strict(text) == [["joyful", "happy"], ["sad"], ["don't care", "numb"]]


def test_synonym_map_later_group_wins():
    assert synonym_map([["a", "b"], ["c", "b"]]) == {"a": "a", "b": "c", "c": "c"}


def test_hand_computed_scores():
    gold = {"s1": ["Happy", "sad"], "s2": ["angry"], "s3": ["calm"], "s4": []}
    pred = {"s1": ["joyful"], "s2": ["angry", "surprised"], "s3": [], "s4": ["calm"], "x": ["a"]}
    groups = {"s1": [["happy", "joyful"]], "s2": [], "s3": [], "s4": []}
    r = score_openset(gold, pred, groups)
    # s1: G={happy, sad} P={happy} -> (1, 1/2); s2: (1/2, 1); s3: empty P -> (0, 0); s4 skipped
    assert r["n"] == 3 and r["n_skipped"] == 1
    assert r["accuracy"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert r["recall"] == pytest.approx((0.5 + 1 + 0) / 3)
    assert r["average"] == pytest.approx((r["accuracy"] + r["recall"]) / 2)
    without = score_openset(gold, pred)  # no synonyms: joyful != happy
    assert without["accuracy"] == pytest.approx((0 + 0.5 + 0) / 3)


def _zip(path: Path, groups: dict[str, str]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in groups.items():
            buffer = io.BytesIO()
            np.save(buffer, text)
            archive.writestr(f"openset-synonym/{name}.npy", buffer.getvalue())
    return path


def test_files_strict_vs_quote_parser(tmp_path):
    gold = tmp_path / "gold.csv"
    pred = tmp_path / "pred.csv"
    gold.write_text(f'name,openset\ns1,"{APOSTROPHE.replace(chr(34), chr(34) * 2)}"\n')
    pred.write_text('name,openset\ns1,"[""don\'t care""]"\nextra,"[\'x\']"\n')
    syn = _zip(tmp_path / "syn.zip", {"s1": "[['sad']]"})
    quote = score_openset_files(gold, pred, syn)
    strict = score_openset_files(gold, pred, syn, strict=True)
    # quote split: G={don, t care, sad}, P={don, t care}
    # strict:      G={don't care, sad},   P={don't care}
    assert (quote["accuracy"], quote["recall"]) == pytest.approx((1.0, 2 / 3))
    assert (strict["accuracy"], strict["recall"]) == pytest.approx((1.0, 1 / 2))


def test_synonym_zip_must_cover_gold_names(tmp_path):
    gold = tmp_path / "gold.csv"
    gold.write_text("name,openset\ns1,\"['a']\"\ns2,\"['b']\"\n")
    syn = _zip(tmp_path / "syn.zip", {"s1": "[['a']]"})
    with pytest.raises(EsvaError, match="s2"):
        score_openset_files(gold, gold, syn)


@pytest.mark.shared
@pytest.mark.skipif(not OV_STORE.is_dir(), reason=f"shared MER reference data absent: {OV_STORE}")
def test_official_mertools_reference_values():
    args = (
        OV_STORE / "check-openset.csv",
        OV_STORE / "predict-openset.csv",
        OV_STORE / "openset-synonym.zip",
    )
    r = score_openset_files(*args)
    # printed by MERTools' main-ov.py on the same files (its docstring and the data README)
    assert r["accuracy"] == 0.581777108433735
    assert r["recall"] == 0.4977911646586345
    assert r["average"] == 0.5397841365461847
    assert r["n"] == 332
    strict = score_openset_files(*args, strict=True)
    # one gold list holds "don't believe": the strict parser keeps it whole, so scores move a bit
    assert strict["average"] != r["average"]
    assert strict["average"] == pytest.approx(r["average"], abs=0.01)
