"""The ``face-expert`` recipe on the engine: FER+ reading, the soft-target loss, a 1-epoch run
through ``esva train --config`` on a synthetic FER+-shaped folder, exact resume, bad keys."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from esva.cli.main import main
from esva.data import ferplus
from esva.errors import EsvaError
from esva.hashing import file_sha256

cv2 = pytest.importorskip("cv2")


def _write_ferplus(root: Path, n_train: int = 40, n_valid: int = 12, seed: int = 0) -> Path:
    """A FER+-shaped folder: 48x48 grey PNGs and header-less label.csv rows in the real format
    (``name,"(0, 0, 48, 48)",`` then 10 vote counts). Class = brightness band, so it learns."""
    rng = np.random.default_rng(seed)
    for split, n in (("FER2013Train", n_train), ("FER2013Valid", n_valid)):
        folder = root / split
        folder.mkdir(parents=True)
        rows = []
        for i in range(n):
            cls = i % 3
            img = (rng.random((48, 48)) * 60 + 80 * cls).astype(np.uint8)
            name = f"fer{i:07d}.png"
            assert cv2.imwrite(str(folder / name), img)
            votes = [0] * 10
            votes[cls], votes[(cls + 1) % 8] = 7, 3
            rows.append(f'{name},"(0, 0, 48, 48)",' + ",".join(map(str, votes)))
        # One unknown-majority image and one not-a-face one: the protocol drops both.
        for j, col in enumerate((8, 9)):
            name = f"fer{n + j:07d}.png"
            cv2.imwrite(str(folder / name), np.zeros((48, 48), np.uint8))
            votes = [0] * 10
            votes[col], votes[0] = 6, 4
            rows.append(f'{name},"(0, 0, 48, 48)",' + ",".join(map(str, votes)))
        (folder / "label.csv").write_text("\n".join(rows) + "\n")
    return root


def _config(tmp_path: Path, root: Path, **train) -> Path:
    import yaml

    train = {"epochs": 1, "batch_size": 8, "threads": 1, "progress": False, **train}
    raw = {
        "recipe": "face-expert",
        "data": {"root": str(root), "cache": str(tmp_path / "cache")},
        "train": train,
    }
    path = tmp_path / "face.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_soft_target_loss_matches_a_hand_computation():
    from esva.recipes.face_expert import soft_cross_entropy

    logits = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    target = torch.tensor([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0]])
    z = math.log(math.exp(1) + math.exp(2) + math.exp(3))
    row0 = -(0.2 * (1 - z) + 0.3 * (2 - z) + 0.5 * (3 - z))
    row1 = math.log(3.0)
    assert float(soft_cross_entropy(logits, target)) == pytest.approx((row0 + row1) / 2, rel=1e-6)


@pytest.mark.parametrize("name", ["standard", "strong"])
def test_augmentation_is_seeded_by_the_batch_and_stays_an_image(name):
    from esva.recipes.face_expert import AUGMENTATIONS, batch_generator

    x = torch.rand(6, 1, 48, 48, generator=torch.Generator().manual_seed(1))
    idx = torch.tensor([5, 3, 9, 0, 2, 7])
    aug = AUGMENTATIONS[name]
    a = aug(x.clone(), batch_generator(0, 1, idx, "cpu"))
    b = aug(x.clone(), batch_generator(0, 1, idx, "cpu"))
    c = aug(x.clone(), batch_generator(0, 2, idx, "cpu"))  # another epoch, other draws
    assert a.shape == x.shape and float(a.min()) >= 0 and float(a.max()) <= 1
    assert torch.equal(a, b) and not torch.equal(a, c) and not torch.equal(a, x)


def test_ferplus_protocol_keeps_emotion_majorities_with_vote_shares(tmp_path):
    root = _write_ferplus(tmp_path / "fer", n_train=6, n_valid=3)
    images, votes, names = ferplus.load_split(root, "train")
    assert images.shape == (8, 48, 48) and votes.shape == (8, 10) and len(names) == 8
    kept = ferplus.load_kept(root, "train")
    assert len(kept) == 6  # the unknown and not-a-face majorities are dropped
    assert kept.labels.tolist() == [0, 1, 2, 0, 1, 2]
    np.testing.assert_allclose(kept.targets[0], [0.7, 0.3, 0, 0, 0, 0, 0, 0])
    from esva.encoders.face_expert import CLASSES

    assert ferplus.EMOTIONS == CLASSES  # the net's outputs are FER+'s 8 emotions, in order


def test_a_stale_cache_is_decoded_again(tmp_path):
    root = _write_ferplus(tmp_path / "fer", n_train=6, n_valid=3)
    cache = tmp_path / "cache"
    first = ferplus.load_split(root, "train", cache)
    assert (cache / "train_images.npy").is_file()
    csv_path = root / "FER2013Train" / "label.csv"
    lines = csv_path.read_text().splitlines()
    lines[0] = lines[0].rsplit(",", 10)[0] + ",0,0,0,0,0,0,10,0,0,0"  # now all votes on fear
    csv_path.write_text("\n".join(lines) + "\n")
    images, votes, _ = ferplus.load_split(root, "train", cache)
    np.testing.assert_array_equal(images, first[0])
    assert votes[0].tolist() == [0, 0, 0, 0, 0, 0, 10, 0, 0, 0]


def test_a_malformed_label_csv_is_refused_in_one_line(tmp_path):
    folder = tmp_path / "FER2013Train"
    folder.mkdir()
    (folder / "label.csv").write_text('a.png,"(0, 0, 48, 48)",1,2,3\n')
    with pytest.raises(EsvaError, match="line 1: expected name, face box and 10 vote counts"):
        ferplus.read_votes(folder)


def test_one_epoch_through_esva_train_writes_a_loadable_face_expert(tmp_path, capsys):
    from esva.encoders.face_expert import ASSET_DIR, FaceExpertNet, load_asset

    root = _write_ferplus(tmp_path / "fer")
    out = tmp_path / "run"
    rc = main(["train", "--config", str(_config(tmp_path, root)), "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    assert f"-> {out / 'best'}" in capsys.readouterr().out
    assert (out / "checkpoint" / "trainer_state.json").is_file()
    assert (out / "checkpoint" / "model.safetensors").is_file()
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1]
    assert 0.0 <= records[0]["val_accuracy"] <= 1.0 and math.isfinite(records[0]["train_loss"])
    # 40 usable training images, batches of 8, the partial last one dropped: 5 steps.
    steps = (out / "steps.jsonl").read_text().splitlines()
    assert len(steps) == 5

    best = out / "best"
    state, config, _ = load_asset(best, verify=False)
    net = FaceExpertNet()
    net.load_state_dict(state, strict=True)
    shipped = json.loads((ASSET_DIR / "config.json").read_text())
    # The shipped folder's keys (the benchmark adds "preprocessing" and more scores later).
    assert set(config) == set(shipped) - {"preprocessing"}
    assert set(config["training"]) >= set(shipped["training"]) - {"command"}
    assert config["classes"] == shipped["classes"] and config["temperature"] > 0
    assert config["training"]["best_epoch"] == 1
    assert [h["epoch"] for h in config["training"]["history"]] == [1]
    assert config["training"]["history"][0]["loss"] == pytest.approx(records[0]["train_loss"])
    assert config["scores"]["ferplus_valid_accuracy"] == pytest.approx(
        records[0]["val_accuracy"], abs=0.1
    )
    from safetensors import safe_open

    with safe_open(str(best / "model.safetensors"), framework="pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} >= {torch.float16}  # noqa: SIM118
    # The encoder runs on the folder: 8 calibrated logits and a 256-d embedding per face.
    from esva.encoders.face_expert import FaceExpertEncoder

    enc = FaceExpertEncoder(pretrained=False)
    enc.net = net.eval().fuse_batchnorm()
    enc.temperature = float(config["temperature"])
    crops = np.random.default_rng(0).integers(0, 255, (2, 64, 64, 1), dtype=np.uint8)
    emb, logits = enc.forward_faces(enc.preprocess(crops))
    assert emb.shape == (2, 256) and logits.shape == (2, 8) and np.isfinite(logits).all()


class Interrupt(Exception):
    pass


def test_a_run_killed_mid_epoch_resumes_to_the_same_weights(tmp_path, monkeypatch):
    """Augmentation is seeded per batch: a resume draws the same images, bit for bit."""
    from esva.encoders.face_expert import FaceExpertNet
    from esva.recipes.registry import load_run, train_recipe

    root = _write_ferplus(tmp_path / "fer", n_train=24, n_valid=6)
    cfg = _config(tmp_path, root, epochs=2, checkpoint_every=1)

    def run_in(folder: str):
        _, run = load_run(cfg)
        run.train.out_dir = str(tmp_path / folder)
        return run

    train_recipe("face-expert", run_in("straight"))
    forward, calls = FaceExpertNet.forward, {"n": 0}

    def dies(self, *args, **kwargs):
        if self.training:
            calls["n"] += 1
            if calls["n"] == 3 + 2:  # 24 images / 8 = 3 steps an epoch: epoch 2's 2nd batch
                raise Interrupt
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(FaceExpertNet, "forward", dies)
    with pytest.raises(Interrupt):
        train_recipe("face-expert", run_in("halves"))
    monkeypatch.setattr(FaceExpertNet, "forward", forward)
    state = json.loads((tmp_path / "halves" / "checkpoint" / "trainer_state.json").read_text())
    assert (state["state"]["epoch"], state["state"]["batch"]) == (1, 1)
    train_recipe("face-expert", run_in("halves"), resume=True)
    a, b = (json.loads((tmp_path / d / "rank0.json").read_text()) for d in ("straight", "halves"))
    assert a["weights_sha256"] == b["weights_sha256"]
    steps = [(tmp_path / d / "steps.jsonl").read_text() for d in ("straight", "halves")]
    assert steps[0] == steps[1] and len(steps[0].splitlines()) == 6
    best = [
        file_sha256(tmp_path / d / "best" / "model.safetensors") for d in ("straight", "halves")
    ]
    assert best[0] == best[1]


@pytest.mark.parametrize(
    ("section", "fragment"),
    [
        ("train: {epoch: 3}", "unknown keys ['epoch'] in 'train'"),
        ("train: {augmentation: wild}", "augmentation must be one of"),
        ("model: {dropout: 1.5}", "dropout must be"),
        ("data: {rooot: x}", "unknown keys ['rooot'] in 'data'"),
    ],
)
def test_a_bad_config_key_is_refused_in_one_line(tmp_path, capsys, section, fragment):
    path = tmp_path / "bad.yaml"
    path.write_text(f"recipe: face-expert\n{section}\n")
    rc = main(["train", "--config", str(path), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert fragment in err, err
    assert not (tmp_path / "run").exists()


def test_the_real_ferplus_labels_have_the_format_the_reader_expects(shared_data: Path):
    root = shared_data / "face_images" / "ferplus"
    names, votes = ferplus.read_votes(root / "FER2013Valid")
    assert len(names) == len(votes) > 3000 and votes.shape[1] == 10
    assert all(n.endswith(".png") for n in names[:50])
    keep, _ = ferplus.majority(votes)
    # Most valid images have an emotion majority; a few hundred are unknown / not a face.
    assert 0.9 < keep.mean() < 1.0


def test_a_folder_without_ferplus_labels_is_refused_in_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    out = tmp_path / "run"
    rc = main(["train", "--config", str(_config(tmp_path, tmp_path / "empty")), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "Traceback" not in err and len(err.splitlines()) == 1, err
    assert "FER2013Train" in err and "no FER+ label.csv" in err, err
    assert not (out / "checkpoint").exists()
