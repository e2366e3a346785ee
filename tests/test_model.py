"""The ESVA model: shapes, missing modalities, persistence, refusal of mismatched configs."""

from __future__ import annotations

import json

import pytest
import torch

from esva.errors import EsvaError
from esva.model import ESVAModel
from esva.model.config import ESVAConfig


def _batch(b=4, ta=100, tv=50, with_text=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    batch = {
        "audio": torch.randn(b, ta, 12, generator=g),
        "audio_mask": torch.ones(b, ta, dtype=torch.bool),
        "visual": torch.randn(b, tv, 6, generator=g),
        "visual_mask": torch.ones(b, tv, dtype=torch.bool),
        "label": torch.tensor([0, 1, 2, 0])[:b],
        "valence": torch.zeros(b),
        "valence_mask": torch.ones(b, dtype=torch.bool),
    }
    if with_text:
        batch["text"] = torch.randn(b, 1, 5, generator=g)
        batch["text_mask"] = torch.ones(b, 1, dtype=torch.bool)
    return batch


def _config(**kw):
    return ESVAConfig(
        audio_dim=12, visual_dim=6, text_dim=5, hidden_dim=16, sync_dim=8, use_valence=True, **kw
    )


def test_forward_losses_and_offsets():
    torch.manual_seed(0)
    model = ESVAModel(_config())
    out = model(_batch())
    assert out.logits.shape == (4, 6) and out.valence.shape == (4,)
    assert set(out.losses) >= {"total", "emo", "align", "contrast", "valence"}
    assert torch.isfinite(out.losses["total"])
    assert out.tau_frames.shape == (4,) and out.offset_confidence.shape == (4,)
    out.losses["total"].backward()
    assert model.sync.audio.weight.grad.abs().sum() > 0, "L_align must train the sync heads"


def test_missing_modality_is_flagged_and_does_not_crash():
    model = ESVAModel(_config()).eval()
    batch = _batch()
    batch["visual_mask"][1] = False
    del batch["text"], batch["text_mask"]
    out = model(batch)
    assert out.present["visual"].tolist() == [True, False, True, True]
    assert out.present["joint"].tolist() == [True, False, True, True]
    assert not out.present["text"].any()
    assert torch.isfinite(out.logits).all()


def test_ablations_change_the_architecture():
    assert ESVAModel(_config(use_alignment=False)).sync is None
    no_msfe = ESVAModel(_config(use_msfe=False))
    assert no_msfe.msfe_branch_weights() is None
    assert set(ESVAModel(_config()).msfe_branch_weights()) == {
        "20ms",
        "60ms",
        "180ms",
        "500ms",
        "980ms",
    }
    out = ESVAModel(_config(use_contrastive=False))(_batch())
    assert "contrast" not in out.losses


def test_modality_dropout_never_hides_everything():
    torch.manual_seed(0)
    model = ESVAModel(_config(modality_dropout=0.9)).train()
    for _ in range(20):
        present = model._present(_batch())
        assert torch.stack([present[m] for m in ("audio", "visual", "text")]).any(0).all()


def test_save_and_load_round_trip(tmp_path):
    torch.manual_seed(0)
    model = ESVAModel(_config()).eval()
    model.save_pretrained(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "config.json",
        "model.safetensors",
    ]
    loaded = ESVAModel.from_pretrained(tmp_path / "m").eval()
    batch = _batch()
    torch.testing.assert_close(loaded(batch).logits, model(batch).logits)


def test_loading_refuses_a_mismatched_config(tmp_path):
    ESVAModel(_config()).save_pretrained(tmp_path / "m")
    with pytest.raises(EsvaError, match=r"different config.*audio_dim"):
        ESVAModel.from_pretrained(tmp_path / "m", config=_config().replace(audio_dim=13))
    # A config.json edited to disagree with the weights is caught by shape.
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    cfg["hidden_dim"] = 32
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(EsvaError, match="weights do not fit the config") as err:
        ESVAModel.from_pretrained(tmp_path / "m")
    assert "model.safetensors" in str(err.value) and "\n" not in str(err.value)


def test_corrupt_weights_give_a_one_line_error(tmp_path):
    ESVAModel(_config()).save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(EsvaError, match="cannot read weights"):
        ESVAModel.from_pretrained(tmp_path / "m")
    with pytest.raises(EsvaError, match="not found"):
        ESVAModel.from_pretrained(tmp_path / "nope")


@pytest.mark.parametrize(
    "bad",
    [
        dict(classes=["a"]),
        dict(audio_dim=0),
        dict(alpha=-1.0),
        dict(msfe_kernel_sizes=[2], msfe_dilations=[1]),
        dict(align_fps=0),
    ],
)
def test_invalid_configs_are_one_line_errors(bad):
    base = dict(audio_dim=4)
    base.update(bad)
    with pytest.raises(EsvaError) as err:
        ESVAConfig(**base)
    assert "\n" not in str(err.value)


def test_config_from_dict_rejects_unknown_keys():
    with pytest.raises(EsvaError, match="unknown model config keys"):
        ESVAConfig.from_dict({"audio_dim": 4, "use_msfee": True})


def test_folders_from_before_the_projections_rename_still_load(tmp_path):
    """Weights saved with the old ``encoders.`` prefix load into ``projections``."""
    from safetensors.torch import load_file, save_file

    model = ESVAModel(ESVAConfig(audio_dim=8, visual_dim=4, hidden_dim=8, sync_dim=4))
    model.save_pretrained(tmp_path / "m")
    path = tmp_path / "m" / "model.safetensors"
    state = load_file(str(path))
    assert any(k.startswith("projections.") for k in state)
    old = {k.replace("projections.", "encoders.", 1): v for k, v in state.items()}
    save_file(old, str(path))
    again = ESVAModel.from_pretrained(tmp_path / "m")
    for key, value in model.state_dict().items():
        assert torch.equal(again.state_dict()[key], value), key
