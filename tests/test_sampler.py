"""The epoch sampler: corpus- then speaker-balanced draws, epoch size, determinism."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from esva.data.clip_table import ClipLabel
from esva.errors import EsvaError
from esva.recipes.sampler import EpochSampler, hierarchical_weights
from esva.recipes.train_esva import corpus_speaker_groups

# a big corpus of 2 speakers (8 + 2 clips) and a small one of 3 speakers (1 clip each)
GROUPS = [("tess", "tess:OAF")] * 8 + [("tess", "tess:YAF")] * 2
GROUPS += [("emovo", f"emovo:{s}") for s in ("f1", "m1", "m2")]


def test_hierarchical_weights_give_equal_shares_per_level():
    p = hierarchical_weights(GROUPS)
    assert p.sum() == pytest.approx(1.0)
    corpus = np.array([g[0] for g in GROUPS])
    assert p[corpus == "tess"].sum() == pytest.approx(0.5)
    assert p[corpus == "emovo"].sum() == pytest.approx(0.5)
    assert p[:8].sum() == pytest.approx(0.25)  # OAF: half of tess, however many clips
    assert p[8] == pytest.approx(0.125)  # a YAF clip: a quarter, shared by 2 clips
    assert p[10] == pytest.approx(1 / 6)


def test_group_sampler_draws_follow_the_shares_and_size():
    sampler = EpochSampler([0] * len(GROUPS), seed=3, groups=GROUPS, size=6000)
    draws = list(sampler)
    assert len(sampler) == len(draws) == 6000
    by_corpus = Counter(GROUPS[i][0] for i in draws)
    assert abs(by_corpus["tess"] / 6000 - 0.5) < 0.03
    sampler.set_epoch(0)
    assert list(sampler) == draws, "same (seed, epoch), same order"
    sampler.set_epoch(1)
    assert list(sampler) != draws


def test_plain_sampler_keeps_its_permutation_and_takes_a_size():
    plain = list(EpochSampler(list(range(10)), seed=0))
    assert sorted(plain) == list(range(10))
    assert len(list(EpochSampler(list(range(10)), seed=0, size=25))) == 25


def test_both_balances_or_mismatched_groups_are_refused():
    with pytest.raises(EsvaError, match="not both"):
        EpochSampler([0] * len(GROUPS), seed=0, balanced=True, groups=GROUPS)
    with pytest.raises(EsvaError, match="one path per clip"):
        EpochSampler([0, 1], seed=0, groups=GROUPS)


def test_corpus_speaker_groups_read_the_corpus_prefix():
    clips = [
        ClipLabel("a", "sad", speaker="tess:OAF"),
        ClipLabel("b", "sad", speaker="Actor_01"),
        ClipLabel("c", "sad"),
    ]
    assert corpus_speaker_groups(clips) == [("tess", "tess:OAF"), ("", "Actor_01"), ("", "clip:c")]
