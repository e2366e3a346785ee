"""TESS, EMOVO and ASED adapters, the ser7 label space and load_corpora.

Without data: tiny fake folder trees in tmp_path (names only; the adapters do not decode media)
exercise the name parsing, the skip reasons and the one-line errors. With ../shared/data: the
real corpora's counts, speakers and label distributions, and the combined ser7 list.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from esva.data.corpora import load_corpora
from esva.data.datasets import (
    ased,
    emovo,
    get_adapter,
    list_adapters,
    load_dataset,
    nemo,
    tess,
)
from esva.data.label_mapping import DROP, SER7, SER7_MAPS, classes_for, map_labels
from esva.errors import EsvaError
from esva.labelsets import CLASS_SETS


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0")
    return path


# ------------------------------------------------------------------------------ TESS
def test_tess_folders_names_and_skips(tmp_path):
    root = tmp_path / "tess"
    _touch(root / "OAF_fear" / "OAF_dead_fear.opus")
    _touch(root / "YAF_pleasant_surprise" / "YAF_back_ps.opus")
    _touch(root / "OAF_neutral" / "OA_bite_neutral.opus")  # the corpus's own speaker typo
    _touch(root / "OAF_angry" / "YAF_back_angry.opus")  # speaker disagrees with the folder
    _touch(root / "YAF_sad" / "YAF_back_happy.opus")  # emotion disagrees with the folder
    _touch(root / "YAF_bored" / "YAF_back_bored.opus")  # not a TESS emotion
    _touch(root / "YAF_sad" / "back.opus")  # no speaker/emotion in the name
    _touch(root / "YAF_sad" / "notes.txt")  # not media: ignored, not reported
    clips = load_dataset("tess", root)
    by_name = {c.name: c for c in clips}
    assert sorted(by_name) == [
        "tess_OAF_bite_neutral",
        "tess_OAF_dead_fear",
        "tess_YAF_back_pleasant_surprise",
    ]
    fear = by_name["tess_OAF_dead_fear"]
    assert (fear.label, fear.speaker, fear.text) == ("fear", "tess:OAF", "Say the word dead")
    assert fear.extra["corpus"] == "tess" and fear.extra["language"] == "en"
    assert by_name["tess_OAF_bite_neutral"].speaker == "tess:OAF"
    assert by_name["tess_YAF_back_pleasant_surprise"].label == "pleasant_surprise"
    reasons = {s.path.name: s.reason for s in clips.skipped}
    assert len(reasons) == 4
    assert "says speaker 'YAF', its folder 'OAF'" in reasons["YAF_back_angry.opus"]
    assert "says emotion 'happy', its folder 'sad'" in reasons["YAF_back_happy.opus"]
    assert "<speaker>_<emotion> folder" in reasons["YAF_back_bored.opus"]
    assert "not a TESS file name" in reasons["back.opus"]

    # strict: the first malformed file is a one-line error naming it
    with pytest.raises(EsvaError) as err:
        load_dataset("tess", root, strict=True)
    assert "\n" not in str(err.value) and str(err.value).startswith(str(root))
    assert ".opus: TESS" in str(err.value)


def test_tess_duplicate_across_roots_is_reported(tmp_path):
    a = _touch(tmp_path / "a" / "OAF_sad" / "OAF_back_sad.opus")
    _touch(tmp_path / "b" / "OAF_sad" / "OAF_back_sad.wav")
    clips = load_dataset("tess", [tmp_path / "a", tmp_path / "b"])
    assert len(clips) == 1 and clips[0].audio == a
    assert clips.skipped[0].reason.startswith("duplicate of")


# ------------------------------------------------------------------------------ EMOVO
def test_emovo_parse_name_fields_and_errors():
    assert emovo.parse_name("dis-f1-b1") == ("disgust", "f1", "b1")
    assert emovo.parse_name("pau-m3-n5") == ("fear", "m3", "n5")
    for bad, why in [
        ("xyz-f1-b1", "emotion code 'xyz'"),
        ("gio-f4-b1", "actor 'f4'"),
        ("gio-f1-b4", "sentence 'b4'"),
        ("gio_f1_b1", "not an EMOVO"),
    ]:
        with pytest.raises(ValueError, match=why):
            emovo.parse_name(bad)


def test_emovo_load_folders_and_strict(tmp_path):
    root = tmp_path / "emovo"
    _touch(root / "f1" / "gio-f1-d2.opus")
    _touch(root / "m2" / "sor-m2-l3.opus")
    _touch(root / "m2" / "tri-m1-b1.opus")  # in another actor's folder
    _touch(root / "m2" / "tri-m2-zz.opus")
    clips = load_dataset("emovo", root)
    assert [(c.name, c.label, c.speaker) for c in clips] == [
        ("emovo_gio-f1-d2", "joy", "emovo:f1"),
        ("emovo_sor-m2-l3", "surprise", "emovo:m2"),
    ]
    assert clips[0].extra == {
        "corpus": "emovo", "language": "it", "code": "gio", "sentence": "d2",
        "sentence_type": "question", "sex": "female",
    }  # fmt: skip
    assert sorted(s.reason for s in clips.skipped) == [
        "EMOVO file of actor 'm1' in folder 'm2'",
        "not an EMOVO file name (expected <emotion>-<actor>-<sentence>)",
    ]
    with pytest.raises(EsvaError, match=r"tri-m1-b1\.opus: EMOVO file of actor 'm1'"):
        load_dataset("emovo", root, strict=True)


# ------------------------------------------------------------------------------ ASED
def test_ased_parse_name_fields_and_errors():
    assert ased.parse_name("f2-06-02-02-63") == ("fearful", "06", "02", "male", "63")
    assert ased.parse_name("S4-04-02-01-29") == ("sad", "04", "02", "female", "29")
    for bad, why in [
        ("x9-01-01-01-01", "emotion code 'x9'"),
        ("n1-01-01-03-01", "gender code '03'"),
        ("n1-01-01-01-66", "speaker '66'"),
        ("n1-01-01-01-00", "speaker '00'"),
        ("n1-01-01-01", "not an ASED"),
    ]:
        with pytest.raises(ValueError, match=why):
            ased.parse_name(bad)


def test_ased_folders_case_and_skips(tmp_path):
    root = tmp_path / "ased"
    _touch(root / "01Neutral" / "n1-01-01-01-05.opus")
    _touch(root / "04Sad" / "S4-04-02-01-29.opus")  # capital letter, as in the corpus
    _touch(root / "04Sad" / "s4-04-02-01-29.wav")  # the same take: a duplicate
    _touch(root / "05Angry" / "h3-01-01-02-07.opus")  # happy file in the angry folder
    _touch(root / "Other" / "a5-01-01-02-07.opus")  # not an emotion folder
    clips = load_dataset("ased", root)
    assert [(c.name, c.label, c.speaker, c.extra["sex"]) for c in clips] == [
        ("ased_n1-01-01-01-05", "neutral", "ased:05", "female"),
        ("ased_s4-04-02-01-29", "sad", "ased:29", "female"),
    ]
    assert clips[1].extra["language"] == "am" and clips[1].extra["corpus"] == "ased"
    reasons = sorted(s.reason for s in clips.skipped)
    assert len(reasons) == 3
    assert reasons[0] == "ASED file name's emotion 'h3' does not match folder '05Angry'"
    assert reasons[1].startswith("ASED file not in an emotion folder")
    assert reasons[2].startswith("duplicate of")
    with pytest.raises(EsvaError, match=r"h3-01-01-02-07\.opus: ASED file name's emotion"):
        load_dataset("ased", root, strict=True)


# ------------------------------------------------------------------------------ nEMO
def test_nemo_parse_name_fields_and_errors():
    assert nemo.parse_name("EB0_anger_13") == ("anger", "EB0")
    with pytest.raises(ValueError, match="unknown emotion 'boredom'"):
        nemo.parse_name("EB0_boredom_1")
    with pytest.raises(ValueError, match="not an nEMO file name"):
        nemo.parse_name("anger_EB0")


def test_nemo_metadata_transcripts_and_disagreement(tmp_path):
    root = tmp_path / "nemo"
    _touch(root / "samples" / "EB0_anger_1.opus")
    _touch(root / "samples" / "WR0_fear_2.opus")
    _touch(root / "samples" / "WR0_sadness_3.opus")  # data.tsv says otherwise: skipped
    _touch(root / "samples" / "XX_anger_1.opus")  # bad speaker id
    (root / "data.tsv").write_text(
        "file_id\temotion\traw_text\tnormalized_text\tspeaker_id\tgender\tage\n"
        "EB0_anger_1.wav\tanger\tLubię czytać.\tlubię czytać\tEB0\tfemale\t27\n"
        "WR0_sadness_3.wav\tneutral\tTak.\ttak\tWR0\tmale\t23\n",
        encoding="utf-8",
    )
    clips = load_dataset("nemo", root)
    by_name = {c.name: c for c in clips}
    assert sorted(by_name) == ["nemo_EB0_anger_1", "nemo_WR0_fear_2"]
    eb = by_name["nemo_EB0_anger_1"]
    assert (eb.label, eb.speaker, eb.text) == ("anger", "nemo:EB0", "Lubię czytać.")
    assert eb.extra["language"] == "pl" and eb.extra["sex"] == "female"
    assert by_name["nemo_WR0_fear_2"].text is None  # no row: no transcript, still a clip
    reasons = {s.path.name: s.reason for s in clips.skipped}
    assert "data.tsv says 'neutral'" in reasons["WR0_sadness_3.opus"]
    assert "not an nEMO file name" in reasons["XX_anger_1.opus"]
    mapped = load_corpora({"nemo": root}, target="ser7")
    assert {c.label for c in mapped} == {"angry", "fearful"}


def test_empty_or_missing_root_is_one_line(tmp_path):
    for corpus in ("tess", "emovo", "ased"):
        with pytest.raises(EsvaError, match="dataset root does not exist"):
            load_dataset(corpus, tmp_path / "missing")
        assert len(load_dataset(corpus, tmp_path)) == 0


# ------------------------------------------------------------------------------ ser7
def test_ser7_tables_cover_every_label_and_stay_in_the_space():
    assert SER7 == CLASS_SETS["ser7"] == classes_for("tess", "ser7")
    assert len(SER7) == 7 and "calm" not in SER7
    for corpus in ("ravdess", "tess", "emovo", "ased", "nemo"):
        assert set(SER7_MAPS[corpus]) == set(get_adapter(corpus).classes), corpus
        assert all(v is DROP or v in SER7 for v in SER7_MAPS[corpus].values()), corpus
    for corpus, table in SER7_MAPS.items():  # every table is complete for its adapter
        assert corpus in list_adapters() and set(table) == set(get_adapter(corpus).classes)
    # the documented choices
    assert SER7_MAPS["ravdess"]["calm"] == "neutral"
    assert SER7_MAPS["tess"]["pleasant_surprise"] == "surprised"
    assert SER7_MAPS["emovo"]["joy"] == "happy" and SER7_MAPS["emovo"]["fear"] == "fearful"
    assert SER7_MAPS["emodb"]["boredom"] is DROP
    # corpora that lack classes: ASED has no disgust/surprised, and still maps
    assert {v for v in SER7_MAPS["ased"].values()} == set(SER7) - {"disgust", "surprised"}


def test_map_labels_to_ser7(tmp_path):
    root = tmp_path / "tess"
    _touch(root / "OAF_pleasant_surprise" / "OAF_back_ps.opus")
    _touch(root / "OAF_fear" / "OAF_back_fear.opus")
    kept, dropped = map_labels(load_dataset("tess", root), "tess", target="ser7")
    assert [(c.label, c.extra["source_label"]) for c in kept] == [
        ("fearful", "fear"),
        ("surprised", "pleasant_surprise"),
    ]
    assert dropped == {}
    with pytest.raises(EsvaError, match="not ser7 classes"):
        map_labels(kept, "generic", target="ser7", table={"fearful": "worried"})


def test_load_corpora_prefixes_speakers_and_maps(tmp_path):
    rav = tmp_path / "ravdess"
    _touch(rav / "Actor_01" / "03-01-02-01-01-01-01.wav")  # calm
    _touch(rav / "Actor_01" / "03-01-01-01-01-01-01.wav")  # neutral
    _touch(tmp_path / "tess" / "OAF_sad" / "OAF_back_sad.opus")
    _touch(tmp_path / "emodb" / "03a01La.wav")  # boredom: no ser7 class
    roots = {"ravdess": rav, "TESS": tmp_path / "tess", "emodb": tmp_path / "emodb"}
    clips = load_corpora(roots, target="ser7")
    rows = sorted((c.extra["corpus"], c.speaker, c.label, c.extra["source_label"]) for c in clips)
    assert rows == [
        ("ravdess", "ravdess:Actor_01", "neutral", "calm"),
        ("ravdess", "ravdess:Actor_01", "neutral", "neutral"),
        ("tess", "tess:OAF", "sad", "sad"),
    ]
    assert [s.reason for s in clips.skipped] == ["emodb label 'boredom' has no ser7 class"]
    # without a target: the corpora's own words, speakers still prefixed
    own = load_corpora(roots)
    assert {c.label for c in own} == {"calm", "neutral", "sad", "boredom"}
    assert {c.speaker for c in own} == {"ravdess:Actor_01", "tess:OAF", "emodb:03"}
    # a clip name in two corpora is refused (here: the same RAVDESS tree twice, via an alias)
    with pytest.raises(EsvaError, match="occurs in both ravdess and ravdess"):
        load_corpora({"ravdess": rav, "RAVDESS": rav})
    with pytest.raises(EsvaError, match="at least one corpus"):
        load_corpora({})


# ------------------------------------------------------------------------------ real data
EXPECTED = {  # corpus -> (clips, speakers, clips per label)
    "tess": (2800, 2, {label: 400 for label in tess.CLASSES}),
    "emovo": (588, 6, {label: 84 for label in emovo.CLASSES}),
    "ased": (2474, 65, {"neutral": 522, "fearful": 510, "happy": 486, "sad": 470, "angry": 486}),
    "nemo": (
        4481,
        9,
        {
            "neutral": 809,
            "sadness": 769,
            "anger": 749,
            "happiness": 749,
            "fear": 736,
            "surprised": 669,
        },
    ),
}


@pytest.mark.shared
@pytest.mark.parametrize("corpus", sorted(EXPECTED))
def test_real_corpus_counts_speakers_labels(shared_data, corpus):
    n_clips, n_speakers, per_label = EXPECTED[corpus]
    clips = load_dataset(corpus, shared_data / "ser_corpora" / corpus, strict=True)
    assert len(clips) == n_clips and not clips.skipped
    assert len({c.name for c in clips}) == n_clips
    assert all(c.name.startswith(f"{corpus}_") for c in clips)
    speakers = Counter(c.speaker for c in clips)
    assert len(speakers) == n_speakers and all(s.startswith(f"{corpus}:") for s in speakers)
    assert dict(Counter(c.label for c in clips)) == per_label
    assert all(c.audio.suffix == ".opus" and c.extra["corpus"] == corpus for c in clips)
    if corpus == "tess":  # 200 words per speaker and emotion
        assert set(Counter((c.speaker, c.label) for c in clips).values()) == {200}
    if corpus == "emovo":  # 14 sentences x 7 emotions per actor
        assert set(speakers.values()) == {98}


@pytest.mark.shared
def test_real_opus_decodes(shared_data):
    from esva.media import load_audio

    for corpus in EXPECTED:
        clip = load_dataset(corpus, shared_data / "ser_corpora" / corpus)[0]
        audio = load_audio(clip.audio)
        assert audio.sample_rate == 16_000 and 0.5 < len(audio.samples) / 16_000 < 10
        assert 0.01 < float(abs(audio.samples).max()) <= 1.0


@pytest.mark.shared
def test_real_combined_ser7(shared_data):
    corpora = shared_data / "ser_corpora"
    roots = {"ravdess": shared_data / "ravdess_speech", "tess": corpora / "tess",
             "emovo": corpora / "emovo", "ased": corpora / "ased"}  # fmt: skip
    clips = load_corpora(roots, target="ser7")
    assert len(clips) == 1200 + 2800 + 588 + 2474 and not clips.skipped
    assert len({c.name for c in clips}) == len(clips)
    assert len({c.speaker for c in clips}) == 20 + 2 + 6 + 65
    labels = Counter(c.label for c in clips)
    assert set(labels) == set(SER7)
    # neutral = RAVDESS neutral 80 + calm 160, TESS 400, EMOVO 84, ASED 522
    assert labels["neutral"] == 240 + 400 + 84 + 522
    assert labels["surprised"] == 160 + 400 + 84 and labels["disgust"] == 160 + 400 + 84
