"""The command line: the demo end to end, train/evaluate, and one-line errors for bad input."""

from __future__ import annotations

import csv
import json

import pytest
import yaml

from esva.cli.main import main


def _assert_one_line_error(capsys, rc, *fragments):
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    for fragment in fragments:
        assert fragment in err, err


def test_demo_writes_a_complete_report(tmp_path, capsys):
    out = tmp_path / "report"
    rc = main(["demo", "--out", str(out), "--epochs", "2", "--clips-per-class", "12", "--quiet"])
    assert rc == 0
    for name in (
        "metrics.json",
        "report.md",
        "confusion.png",
        "offsets.png",
        "curves.png",
        "msfe_weights.png",
    ):
        assert (out / name).stat().st_size > 0, name
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["variants"]) == {
        "ESVA (full)",
        "w/o MSFE",
        "w/o contrastive",
        "w/o alignment",
    }
    full = metrics["variants"]["ESVA (full)"]
    assert "offset_mae_ms" in full
    assert "offset_mae_ms" not in metrics["variants"]["w/o alignment"]
    report = (out / "report.md").read_text()
    assert "w/o MSFE" in report and "Effect of each component" in report
    assert f"| ESVA (full) | {full['weighted_f1']:.3f} |" in report  # the table shows metrics.json
    # Refuses to overwrite a report.
    rc = main(["demo", "--out", str(out), "--epochs", "1"])
    _assert_one_line_error(capsys, rc, "report folder exists")


def test_train_then_evaluate(small_corpus, tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "model": {
                    "audio_dim": 32,
                    "visual_dim": 16,
                    "text_dim": 16,
                    "hidden_dim": 16,
                    "use_valence": True,
                },
                "data": {"root": str(small_corpus)},
                "train": {"epochs": 1, "batch_size": 8, "progress": False, "cpu": True},
            }
        )
    )
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "run")]) == 0
    assert "best model" in capsys.readouterr().out
    out = tmp_path / "eval"
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(tmp_path / "run" / "best"),
                "--data",
                str(small_corpus),
                "--out",
                str(out),
                "--json",
            ]
        )
        == 0
    )
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["n"] == 24
    with (out / "predictions.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    # The reported F1 is the F1 of the written predictions against the store's labels.
    with (small_corpus / "labels.csv").open() as handle:
        gold = {r["name"]: r["discrete"] for r in csv.DictReader(handle)}
    from esva.evaluate.classification import score_classification

    again = score_classification(
        {r["name"]: gold[r["name"]] for r in rows},
        {r["name"]: r["discrete"] for r in rows},
        sorted(set(gold.values())),
    )
    assert again["weighted_f1"] == pytest.approx(metrics["weighted_f1"])
    assert len(rows) == 24 and {"name", "discrete", "valence", "modalities"} <= set(rows[0])
    assert (out / "confusion.png").exists() and (out / "offsets.csv").exists()
    # Predictions are MERTools-format: esva score reads them back.
    assert (
        main(
            [
                "score",
                "mer2023",
                "--gold",
                str(small_corpus / "labels.csv"),
                "--pred",
                str(out / "predictions.csv"),
                "--json",
            ]
        )
        == 2
    )  # gold has 72 names, predictions 24
    _assert_one_line_error(capsys, 2, "syn_")


@pytest.mark.parametrize(
    "config_text,fragments",
    [
        ("model: {audio_dim: 32}\nbogus: {}\n", ["unknown config sections"]),
        ("model: {audio_dim: 32, use_msfee: true}\n", ["unknown model config keys"]),
        ("model: [1, 2\n", ["not valid YAML"]),
        ("model: {audio_dim: 7}\ndata: {root: CORPUS}\n", ["expects dimension 7", "safetensors"]),
        (
            "model: {audio_dim: 32}\ndata: {root: /nonexistent/dir}\n",
            ["dataset directory not found"],
        ),
        ("recipe: esvaa\nmodel: {audio_dim: 32}\n", ["unknown recipe 'esvaa'", "known: esva"]),
        ("recipe: [esva]\nmodel: {audio_dim: 32}\n", ["unknown recipe"]),
        # The recipe's own config class reads the sections: an LLM section under recipe: llm
        ("recipe: llm\nmodel: {use_msfe: true}\n", ["unknown LLM config keys ['use_msfe']"]),
    ],
)
def test_train_bad_configs(small_corpus, tmp_path, capsys, config_text, fragments):
    config = tmp_path / "bad.yaml"
    config.write_text(config_text.replace("CORPUS", str(small_corpus)))
    rc = main(["train", "--config", str(config), "--out", str(tmp_path / "o")])
    _assert_one_line_error(capsys, rc, *fragments)


def test_evaluate_with_a_checkpoint_from_another_config(small_corpus, tmp_path, capsys):
    from esva.model import ESVAModel
    from esva.model.config import ESVAConfig

    ESVAModel(ESVAConfig(audio_dim=40)).save_pretrained(tmp_path / "m")
    rc = main(
        [
            "evaluate",
            "--model",
            str(tmp_path / "m"),
            "--data",
            str(small_corpus),
            "--out",
            str(tmp_path / "e"),
        ]
    )
    _assert_one_line_error(capsys, rc, "audio features have shape", "expects dimension 40")


def test_missing_config_file(tmp_path, capsys):
    rc = main(["train", "--config", str(tmp_path / "nope.yaml")])
    _assert_one_line_error(capsys, rc, "nope.yaml", "not found")


def test_usage_error_is_not_a_traceback(capsys):
    rc = main(["evaluate", "--model", "x"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and "Missing option" in err
