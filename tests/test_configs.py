"""The shipped example configs parse into valid run configs (ESVA runs and LLM runs)."""

import copy
import shutil
from pathlib import Path

import pytest
import yaml

from esva.recipes.config import RunConfig
from esva.recipes.train_llm import LLMRunConfig

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def _is_llm(path: Path) -> bool:
    model = yaml.safe_load(path.read_text()).get("model") or {}
    return "backbone" in model


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_example_configs_load(path):
    recipe = yaml.safe_load(path.read_text()).get("recipe")
    if recipe is not None:  # a named recipe (esva.recipes.registry): its own config class
        from esva.recipes.registry import load_run

        name, run = load_run(path)
        assert name == recipe and run.train.epochs > 0
    elif _is_llm(path):
        run = LLMRunConfig.load(path)
        assert run.train.epochs > 0
    else:
        run = RunConfig.load(path)
        assert run.model.modalities and run.train.epochs > 0


# --- hostile configs: each is one line naming the key, exit 2, before any training -----------
ESVA = {
    "model": {"audio_dim": 32, "visual_dim": 16, "text_dim": 16, "hidden_dim": 16},
    "data": {"root": "data"},
    "train": {"epochs": 1, "progress": False, "cpu": True},
}
LLM = {
    "model": {"tokens": 2, "backbone": "tiny-random-llama", "lora": {"r": 4}},
    "data": {"root": "data", "streams": {"audio": "enc"}, "reasoning": 0.0},
    "train": {"epochs": 1, "progress": False, "cpu": True},
}
HOSTILE = [
    ("train", "epochs", "two"),
    ("train", "epochs", 2.5),
    ("train", "epochs", True),  # a bool is not an integer
    ("train", "batch_size", 0),
    ("train", "lr", "fast"),
    ("train", "lr", float("nan")),
    ("train", "lr", float("inf")),
    ("train", "lr", -1),
    ("train", "grad_clip", "no"),
    ("train", "seed", "abc"),
    ("train", "out_dir", 123),
    ("train", "monitor", "bogus_metric"),
    ("train", "checkpoint_every", -1),
    ("data", "streams", ["audio", "enc"]),
]
CASES = [("train", *c) for c in HOSTILE] + [("train-llm", *c) for c in HOSTILE]
CASES += [
    ("train", "train", "num_workers", -3),
    ("train", "train", "patience", 0),
    ("train", "data", "val_fraction", 1.5),
    ("train", "model", "msfe_kernel_sizes", ["a", "b"]),
    ("train", "model", "hidden_dim", "big"),
    ("train-llm", "train", "threads", -3),
    ("train-llm", "train", "grad_accum", 0),
    ("train-llm", "train", "warmup", 2.0),
    ("train-llm", "data", "val_limit", "all"),
]


def _assert_one_line_error(capsys, rc, *fragments):
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    for fragment in fragments:
        assert fragment in err, err


@pytest.mark.parametrize(
    ("command", "section", "key", "value"), CASES, ids=lambda v: str(v).replace(" ", "")
)
def test_hostile_config_is_one_line_naming_the_key(command, section, key, value, tmp_path, capsys):
    from esva.cli.main import main

    raw = copy.deepcopy(ESVA if command == "train" else LLM)
    raw[section][key] = value
    raw["train"].setdefault("out_dir", str(tmp_path / "run"))
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(raw))
    rc = main([command, "--config", str(config)])
    _assert_one_line_error(capsys, rc, key, f"'{section}'" if section != "model" else "model")
    assert not (tmp_path / "run").exists(), "refused before training"


@pytest.mark.parametrize("command", ["train", "train-llm"])
def test_config_that_is_a_directory_is_one_line(command, tmp_path, capsys):
    from esva.cli.main import main

    rc = main([command, "--config", str(tmp_path)])
    _assert_one_line_error(capsys, rc, str(tmp_path), "directory")


def test_resume_refuses_a_checkpoint_changed_since_it_was_written(small_corpus, tmp_path, capsys):
    from esva.cli.main import main

    raw = copy.deepcopy(ESVA)
    raw["data"]["root"] = str(small_corpus)
    raw["train"].update(batch_size=8)
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(raw))
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "run")]) == 0
    capsys.readouterr()

    def tamper_pickle(ckpt):  # accelerate would load this one without a word
        with open(ckpt / "random_states_0.pkl", "ab") as handle:
            handle.write(b"\0")
        return "random_states_0.pkl"

    def tamper_weights(ckpt):
        data = bytearray((ckpt / "model.safetensors").read_bytes())
        data[-1] ^= 1
        (ckpt / "model.safetensors").write_bytes(bytes(data))
        return "model.safetensors"

    def add_file(ckpt):
        (ckpt / "random_states_1.pkl").write_bytes(b"not written by esva")
        return "random_states_1.pkl"

    def remove_file(ckpt):
        (ckpt / "optimizer.bin").unlink()
        return "optimizer.bin"

    for i, tamper in enumerate((tamper_pickle, tamper_weights, add_file, remove_file)):
        run = tmp_path / f"copy{i}"
        shutil.copytree(tmp_path / "run", run)
        name = tamper(run / "checkpoint")
        rc = main(
            ["train", "--config", str(config), "--out", str(run), "--resume", "--epochs", "2"]
        )
        _assert_one_line_error(capsys, rc, name)
        assert len((run / "metrics.jsonl").read_text().splitlines()) == 1, "nothing trained"
    # The untouched checkpoint resumes.
    rc = main(["train", "--config", str(config), "--out", str(tmp_path / "run"), "--resume"])
    assert (
        rc == 0
        and main(
            [
                "train",
                "--config",
                str(config),
                "--out",
                str(tmp_path / "run"),
                "--resume",
                "--epochs",
                "2",
            ]
        )
        == 0
    )
