"""``esva score`` through the CLI entry: JSON output, tables, and one-line user errors."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from esva.cli.main import main

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "mer_reference"
OV_STORE = SHARED / "mer2024_ov_store"
WHEEL_DIR = SHARED / "emotion_wheel"

GOLD_CSV = """name,discrete,valence
s0,neutral,0.0
s1,neutral,0.5
s2,angry,-1.0
s3,happy,2.0
"""
PRED_CSV = """name,discrete,valence
s3,happy,2.0
s2,angry,-1.0
s1,happy,0.5
s0,neutral,1.0
extra,sad,0.0
"""


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _run_json(capsys, argv):
    rc = main(argv)
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    return json.loads(captured.out)  # exactly one JSON object on stdout


def _run_error(capsys, argv, *needles):
    rc = main(argv)
    captured = capsys.readouterr()
    assert rc == 2
    err = captured.err.strip()
    assert err.startswith("esva: error: ") and "\n" not in err, err
    assert "Traceback" not in captured.err + captured.out
    for needle in needles:
        assert needle in err, (needle, err)
    return err


def test_mer2023_json_with_valence_and_confusion(tmp_path, capsys):
    gold, pred = _write(tmp_path, "g.csv", GOLD_CSV), _write(tmp_path, "p.csv", PRED_CSV)
    png = tmp_path / "cm.png"
    r = _run_json(
        capsys,
        [
            "score",
            "mer2023",
            "--gold",
            str(gold),
            "--pred",
            str(pred),
            "--json",
            "--confusion",
            str(png),
        ],
    )
    assert {"accuracy", "weighted_f1", "macro_f1", "uar", "mse", "combined"} <= set(r)
    assert r["n"] == 4 and r["accuracy"] == pytest.approx(0.75)
    assert r["mse"] == pytest.approx(1 / 4)
    assert r["combined"] == pytest.approx(r["weighted_f1"] - 0.25 * r["mse"])
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_mer2023_tables_and_custom_classes(tmp_path, capsys):
    gold = _write(tmp_path, "g.csv", "name,discrete\na,calm\nb,fearful\n")
    pred = _write(tmp_path, "p.csv", "name,discrete\na,calm\nb,calm\n")
    assert (
        main(["score", "mer2023", "--gold", str(gold), "--pred", str(pred), "--classes", "ravdess"])
        == 0
    )
    out = capsys.readouterr().out
    assert "weighted_f1" in out and "per class" in out and "fearful" in out and "0.5" in out
    r = _run_json(
        capsys,
        [
            "score",
            "mer2023",
            "--gold",
            str(gold),
            "--pred",
            str(pred),
            "--classes",
            "calm,fearful",
            "--json",
        ],
    )
    assert r["uar"] == pytest.approx(0.5) and "mse" not in r


def test_ov_json_on_crafted_files(tmp_path, capsys):
    gold = _write(tmp_path, "g.csv", "name,openset\na,\"['happy', 'sad']\"\n")
    pred = _write(tmp_path, "p.csv", "name,openset\na,\"['Happy']\"\n")
    r = _run_json(capsys, ["score", "ov", "--gold", str(gold), "--pred", str(pred), "--json"])
    assert (r["accuracy"], r["recall"], r["average"]) == pytest.approx((1.0, 0.5, 0.75))


@pytest.mark.shared
@pytest.mark.skipif(not OV_STORE.is_dir(), reason=f"shared MER reference data absent: {OV_STORE}")
def test_ov_prints_the_official_values(capsys):
    argv = [
        "score",
        "ov",
        "--gold",
        str(OV_STORE / "check-openset.csv"),
        "--pred",
        str(OV_STORE / "predict-openset.csv"),
        "--synonyms",
        str(OV_STORE / "openset-synonym.zip"),
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    for value in ("0.581777108433735", "0.4977911646586345", "0.5397841365461847"):
        assert value in out
    r = _run_json(capsys, [*argv, "--json", "--strict-parse"])
    assert r["parser"] == "strict" and r["average"] != 0.5397841365461847


@pytest.mark.shared
@pytest.mark.skipif(not WHEEL_DIR.is_dir(), reason=f"shared wheel files absent: {WHEEL_DIR}")
def test_wheel_json(tmp_path, capsys):
    gold = _write(tmp_path, "g.csv", "name,openset\na,\"['happy', 'angry']\"\nb,\"['sad']\"\n")
    pred = _write(tmp_path, "p.csv", 'name,openset\na,"joyful, furious"\nb,"[\'happy\']"\n')
    r = _run_json(
        capsys,
        [
            "score",
            "wheel",
            "--gold",
            str(gold),
            "--pred",
            str(pred),
            "--wheel-dir",
            str(WHEEL_DIR),
            "--level",
            "level1",
            "--json",
        ],
    )
    assert {"accuracy", "recall", "average", "fscore"} <= set(r)
    assert r["accuracy"] == pytest.approx(0.5) and r["recall"] == pytest.approx(0.5)
    assert (
        main(
            [
                "score",
                "wheel",
                "--gold",
                str(gold),
                "--pred",
                str(pred),
                "--wheel-dir",
                str(WHEEL_DIR),
            ]
        )
        == 0
    )
    assert "wheel5" in capsys.readouterr().out


# ----------------------------------------------------------------------------- user errors
def _mer2023(gold: Path, pred: Path, *extra: str) -> list[str]:
    return ["score", "mer2023", "--gold", str(gold), "--pred", str(pred), *extra]


def test_error_missing_file(tmp_path, capsys):
    pred = _write(tmp_path, "p.csv", PRED_CSV)
    _run_error(capsys, _mer2023(tmp_path / "nope.csv", pred), "nope.csv", "not found")


def test_error_wrong_columns(tmp_path, capsys):
    gold = _write(tmp_path, "g.csv", "id,label\ns0,neutral\n")
    pred = _write(tmp_path, "p.csv", PRED_CSV)
    _run_error(capsys, _mer2023(gold, pred), "g.csv", "expected name,discrete", "found id,label")


def test_error_unknown_class_names(tmp_path, capsys):
    gold = _write(tmp_path, "g.csv", GOLD_CSV)
    pred = _write(
        tmp_path, "p.csv", PRED_CSV.replace("s1,happy", "s1,joy").replace("extra,sad", "extra,meh")
    )
    _run_error(capsys, _mer2023(gold, pred), "p.csv", "'joy'", "'meh'")


def test_error_gold_name_missing_from_predictions(tmp_path, capsys):
    gold = _write(tmp_path, "g.csv", GOLD_CSV)
    pred = _write(tmp_path, "p.csv", PRED_CSV.replace("s2,angry,-1.0\n", ""))
    _run_error(capsys, _mer2023(gold, pred), "p.csv", "s2")


def test_error_empty_file(tmp_path, capsys):
    gold = _write(tmp_path, "g.csv", "")
    pred = _write(tmp_path, "p.csv", PRED_CSV)
    _run_error(capsys, _mer2023(gold, pred), "g.csv", "empty")
    header_only = _write(tmp_path, "h.csv", "name,discrete\n")
    _run_error(capsys, _mer2023(header_only, pred), "h.csv", "no rows")


def test_error_non_numeric_valence(tmp_path, capsys):
    gold = _write(tmp_path, "g.csv", GOLD_CSV.replace("0.5", "high"))
    pred = _write(tmp_path, "p.csv", PRED_CSV)
    _run_error(capsys, _mer2023(gold, pred), "g.csv", "'high'", "s1")


def test_error_bad_zip(tmp_path, capsys):
    gold = _write(tmp_path, "g.csv", "name,openset\na,\"['happy']\"\n")
    bad = _write(tmp_path, "syn.zip", "this is not a zip")
    argv = ["score", "ov", "--gold", str(gold), "--pred", str(gold), "--synonyms", str(bad)]
    _run_error(capsys, argv, "syn.zip", "zip")
    empty = tmp_path / "empty.zip"
    with zipfile.ZipFile(empty, "w") as archive:
        archive.writestr("readme.txt", "no npy here")
    _run_error(capsys, [*argv[:-1], str(empty)], "empty.zip", ".npy")


def test_error_unparseable_list_in_strict_mode(tmp_path, capsys):
    gold = _write(tmp_path, "g.csv", 'name,openset\na,"happy, sad"\n')
    _run_error(
        capsys,
        ["score", "ov", "--gold", str(gold), "--pred", str(gold), "--strict-parse"],
        "g.csv",
        "openset of a",
    )


def test_error_missing_wheel_dir(tmp_path, capsys):
    gold = _write(tmp_path, "g.csv", "name,openset\na,\"['happy']\"\n")
    _run_error(
        capsys,
        [
            "score",
            "wheel",
            "--gold",
            str(gold),
            "--pred",
            str(gold),
            "--wheel-dir",
            str(tmp_path / "nowheel"),
        ],
        "nowheel",
    )
