"""Speaker-independent folds: disjoint, complete, balanced, deterministic, and checked on load."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from esva.data.folds import Folds, make_speaker_folds
from esva.data.sources import ClipSource
from esva.errors import EsvaError


def _corpus(n_speakers=20, per_speaker=6, sizes=None):
    """RAVDESS-like: Actor_01..NN, odd = male, with ``per_speaker`` clips (or ``sizes[i]``)."""
    clips = []
    for a in range(1, n_speakers + 1):
        count = sizes[a - 1] if sizes else per_speaker
        for j in range(count):
            clips.append(
                ClipSource(
                    name=f"a{a:02d}_{j}",
                    label="happy",
                    speaker=f"Actor_{a:02d}",
                    extra={"sex": "male" if a % 2 else "female"},
                )
            )
    return clips


def test_folds_are_speaker_disjoint_and_cover_every_clip_once():
    clips = _corpus()
    folds = make_speaker_folds(clips, k=5, seed=0)
    tested = Counter()
    for i in range(folds.k):
        train, val, test = folds.split(i)
        speakers = [{c.speaker for c in part} for part in (train, val, test)]
        assert not (
            speakers[0] & speakers[1] or speakers[0] & speakers[2] or speakers[1] & speakers[2]
        )
        assert len(train) + len(val) + len(test) == len(clips)
        assert val, "every fold has a validation split for early stopping"
        tested.update(c.name for c in test)
    assert set(tested) == {c.name for c in clips} and set(tested.values()) == {1}


def test_ravdess_like_folds_are_balanced_by_sex():
    folds = make_speaker_folds(_corpus(), k=5, seed=3)
    for i, fold in enumerate(folds.folds):
        assert len(fold.test) == 4
        sexes = Counter("male" if int(s[-2:]) % 2 else "female" for s in fold.test)
        assert sexes == {"male": 2, "female": 2}, i
        val_sexes = Counter("male" if int(s[-2:]) % 2 else "female" for s in fold.val)
        assert val_sexes == {"male": 1, "female": 1}, i  # 15 % of 16 training actors


def test_uneven_speakers_balance_clip_counts():
    sizes = [40, 30, 25, 20, 10, 10, 8, 5, 3, 2, 1, 1]
    clips = [
        ClipSource(name=f"{s}_{j}", speaker=f"s{s}") for s, n in enumerate(sizes) for j in range(n)
    ]
    folds = make_speaker_folds(clips, k=3, seed=1, val_fraction=0.0)
    per_fold = [len(folds.split(i)[2]) for i in range(3)]
    assert sum(per_fold) == len(clips) and max(per_fold) - min(per_fold) <= 5
    assert all(not fold.val for fold in folds.folds)


def test_deterministic_for_a_seed():
    a = make_speaker_folds(_corpus(), k=5, seed=7)
    b = make_speaker_folds(list(reversed(_corpus())), k=5, seed=7)  # input order does not matter
    assert a.folds == b.folds
    others = [make_speaker_folds(_corpus(), k=5, seed=s).folds for s in range(8, 12)]
    assert any(f != a.folds for f in others)


def test_save_load_round_trip(tmp_path):
    clips = _corpus()
    folds = make_speaker_folds(clips, k=4, seed=0)
    path = tmp_path / "folds.json"
    folds.save(path)
    data = json.loads(path.read_text())
    assert data["k"] == 4 and set(data["folds"][0]) >= {"test_speakers", "test_clips", "val_clips"}
    loaded = Folds.load(path, clips)
    assert loaded.folds == folds.folds and loaded.seed == 0
    for i in range(4):
        assert [[c.name for c in part] for part in loaded.split(i)] == [
            [c.name for c in part] for part in folds.split(i)
        ]


def test_load_refuses_a_mismatched_dataset(tmp_path):
    clips = _corpus()
    path = tmp_path / "folds.json"
    make_speaker_folds(clips, k=5, seed=0).save(path)
    with pytest.raises(
        EsvaError, match=r"folds\.json: folds file does not match .*1 clips in the file"
    ):
        Folds.load(path, clips[:-1])
    extra = [*clips, ClipSource(name="new", speaker="Actor_01", extra={"sex": "male"})]
    with pytest.raises(EsvaError, match="1 dataset clips not in the file"):
        Folds.load(path, extra)
    moved = [*clips[:-1], ClipSource(name=clips[-1].name, speaker="Actor_01")]
    with pytest.raises(EsvaError, match="another speaker"):
        Folds.load(path, moved)
    with pytest.raises(EsvaError, match="not an esva folds file"):
        (tmp_path / "x.json").write_text('{"a": 1}')
        Folds.load(tmp_path / "x.json", clips)
    with pytest.raises(EsvaError, match="file not found"):
        Folds.load(tmp_path / "none.json", clips)


def test_load_checks_media_still_exist(tmp_path):
    media = tmp_path / "media"
    media.mkdir()
    clips = []
    for s in range(3):
        path = media / f"c{s}.wav"
        path.write_bytes(b"\0")
        clips.append(ClipSource(name=f"c{s}", audio=path, speaker=f"s{s}"))
    make_speaker_folds(clips, k=3).save(tmp_path / "f.json")
    assert Folds.load(tmp_path / "f.json", clips).k == 3
    (media / "c1.wav").unlink()
    with pytest.raises(EsvaError, match=r"1 media files .* no longer exist \(first: .*c1\.wav\)"):
        Folds.load(tmp_path / "f.json", clips)


def test_bad_requests():
    with pytest.raises(EsvaError, match="at least 5 speakers"):
        make_speaker_folds(_corpus(n_speakers=4), k=5)
    with pytest.raises(EsvaError, match="has no speaker"):
        make_speaker_folds([ClipSource(name="x"), ClipSource(name="y", speaker="s")], k=2)
    with pytest.raises(EsvaError, match="fold 5 does not exist"):
        make_speaker_folds(_corpus(), k=5).split(5)


@pytest.mark.shared
def test_real_ravdess_five_folds(shared_data):
    from esva.data.datasets import load_dataset

    clips = load_dataset("ravdess", shared_data / "ravdess_speech")
    folds = make_speaker_folds(clips, k=5, seed=0)
    for i in range(5):
        train, val, test = folds.split(i)
        assert (len(train), len(val), len(test)) == (840, 120, 240)
        assert Counter(c.extra["sex"] for c in test) == {"male": 120, "female": 120}
