"""The layer-choice rule shared by every transformer encoder (esva.encoders.layers)."""

from __future__ import annotations

import pytest
import torch

from esva.encoders.layers import LayerSelector, LayerSpec
from esva.errors import EsvaError

NUM_STATES = 13  # a 12-layer model: embeddings + 12 blocks


def _states(seed: int = 0) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(2, 7, 5, generator=generator) for _ in range(NUM_STATES))


@pytest.mark.parametrize(
    ("layer", "kind", "indices", "text"),
    [
        ("last", "last", [12], "last"),
        (" LAST ", "last", [12], "last"),
        (3, "index", [3], "3"),
        ("3", "index", [3], "3"),
        (-2, "index", [11], "-2"),
        ("-4..-1", "range", [9, 10, 11, 12], "-4..-1 mean"),
        (" 6 .. 8 ", "range", [6, 7, 8], "6..8 mean"),
        ("0..-1", "range", list(range(13)), "0..-1 mean"),
        ("learned", "learned", list(range(13)), "learned"),
    ],
)
def test_parse_forms(layer, kind, indices, text):
    spec = LayerSpec.parse(layer)
    assert spec.kind == kind
    assert spec.indices(NUM_STATES) == indices
    assert str(spec) == text
    assert spec.needs_hidden_states == (kind != "last")


@pytest.mark.parametrize("layer", ["foo", "", "1..", "..2", "1.5", True, None, "-1..-4"])
def test_bad_layer_is_one_line_user_error(layer):
    with pytest.raises(EsvaError) as info:
        LayerSelector(layer, NUM_STATES)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("layer", [13, -14, "0..13", "-20..-1"])
def test_out_of_range_names_valid_indices(layer):
    with pytest.raises(EsvaError, match=r"valid indices -13\.\.12"):
        LayerSelector(layer, NUM_STATES)


def test_last_returns_the_final_output_not_a_hidden_state():
    states = _states()
    final = torch.full_like(states[-1], 7.0)  # e.g. after a final norm that hidden_states lack
    assert torch.equal(LayerSelector("last", NUM_STATES)(states, final), final)
    with pytest.raises(RuntimeError):
        LayerSelector("-1", NUM_STATES)(None, final)


def test_index_and_range_semantics():
    states = _states()
    final = states[-1]
    assert torch.equal(LayerSelector(4, NUM_STATES)(states, final), states[4])
    assert torch.equal(LayerSelector(-3, NUM_STATES)(states, final), states[10])
    expected = (states[9] + states[10] + states[11] + states[12]) / 4
    got = LayerSelector("-4..-1", NUM_STATES)(states, final)
    torch.testing.assert_close(got, expected)
    # A one-layer range is that layer.
    torch.testing.assert_close(LayerSelector("5..5", NUM_STATES)(states, final), states[5])


def test_wrong_number_of_states_is_caught():
    states = _states()
    with pytest.raises(RuntimeError, match="expected 13"):
        LayerSelector("-2..-1", NUM_STATES)(states[:-1], states[-1])


def test_learned_starts_as_mean_and_trains():
    states = _states()
    selector = LayerSelector("learned", NUM_STATES)
    assert [name for name, _ in selector.named_parameters()] == ["weights"]
    out = selector(states, states[-1])
    torch.testing.assert_close(out, torch.stack(states).mean(0))

    # Gradient reaches the layer weights: fine-tuning can learn the weighting.
    target = states[3].clone()
    optimiser = torch.optim.SGD(selector.parameters(), lr=50.0)
    before = torch.nn.functional.mse_loss(selector(states, states[-1]), target).item()
    for _ in range(30):
        optimiser.zero_grad()
        loss = torch.nn.functional.mse_loss(selector(states, states[-1]), target)
        loss.backward()
        optimiser.step()
    assert loss.item() < before / 2
    assert int(torch.argmax(selector.weights)) == 3


def test_fixed_selectors_have_no_parameters():
    for layer in ("last", 2, "-4..-1"):
        assert list(LayerSelector(layer, NUM_STATES).parameters()) == []
