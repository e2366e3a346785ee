"""Corpus adapters (esva.data.datasets) on generated trees, and on ../shared/data when present."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from esva.data.datasets import get_adapter, list_adapters, load_dataset
from esva.data.datasets.merr import (
    merr_entries_from_clips,
    read_merr_json,
    write_merr_json,
    write_merr_labels,
)
from esva.data.datasets.ravdess import EXPORT_OFFSET_S, parse_name
from esva.errors import EsvaError


def _wav(path: Path, seconds: float = 0.05, rate: int = 16_000) -> Path:
    """A tiny real audio file (wav/flac by suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.zeros(int(seconds * rate), np.float32), rate)
    return path


def _touch(path: Path) -> Path:
    """A placeholder where only the name matters (the adapters do not decode media)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0")
    return path


# ------------------------------------------------------------------------------ registry
def test_registry_lists_and_resolves_every_adapter():
    names = list_adapters()
    assert {"ravdess", "mer2023", "mer2024", "merr", "emodb", "cremad", "meld", "generic"} <= set(
        names
    )
    for name in names:
        adapter = get_adapter(name)
        assert adapter.name == name and callable(adapter.load)
    assert get_adapter("CREMA-D").name == "cremad"
    with pytest.raises(EsvaError, match="unknown dataset 'nope'"):
        get_adapter("nope")


# ------------------------------------------------------------------------------ RAVDESS
def test_ravdess_parse_name_fields_and_errors():
    name = parse_name("02-01-06-02-01-02-13")
    assert (name.label, name.speaker, name.sex, name.take) == (
        "fearful",
        "Actor_13",
        "male",
        "01-06-02-01-02-13",
    )
    assert parse_name("03-01-08-01-01-01-14").sex == "female"
    for bad, why in [
        ("03-01-09-01-01-01-01", "emotion"),
        ("03-01-01-02-01-01-01", "neutral"),  # neutral has no strong intensity
        ("03-02-07-01-01-01-01", "song"),  # song has no disgust
        ("04-01-01-01-01-01-01", "modality"),
        ("03-01-01-01-01-01-25", "actor"),
        ("hello", "not a RAVDESS"),
    ]:
        with pytest.raises(ValueError, match=why):
            parse_name(bad)


@pytest.fixture
def ravdess_tree(tmp_path):
    speech, video = tmp_path / "speech", tmp_path / "video"
    # take A: full-AV + video-only + audio-only; take B: video-only + audio-only;
    # take C: audio-only; take D: a song take, audio-only; take E: video-only without audio.
    _touch(video / "Actor_01" / "01-01-01-01-01-01-01.mp4")
    _touch(video / "Actor_01" / "02-01-01-01-01-01-01.mp4")
    _wav(speech / "Actor_01" / "03-01-01-01-01-01-01.flac")
    _touch(video / "Actor_01" / "02-01-05-02-02-01-01.mp4")
    _wav(speech / "Actor_01" / "03-01-05-02-02-01-01.flac")
    _wav(speech / "Actor_02" / "03-01-04-01-01-02-02.flac")
    _wav(speech / "Actor_02" / "03-02-03-01-01-01-02.flac")
    _touch(video / "Actor_02" / "02-01-08-01-01-01-02.mp4")
    # problems that must be reported, not dropped silently
    _wav(speech / "Actor_01" / "03-01-09-01-01-01-01.flac")  # bad emotion code
    _wav(speech / "Actor_01" / "notes.wav")
    _touch(speech / "Actor_01" / "03-01-04-01-01-01-01.mp4")  # 03- must be audio
    (speech / "README.txt").write_text("not a clip")  # not media: ignored
    return speech, video


def test_ravdess_pairs_twins_and_reports_skips(ravdess_tree):
    speech, video = ravdess_tree
    clips = load_dataset("ravdess", [speech, video], one_per_take=False)
    by_name = {c.name: c for c in clips}
    kinds = Counter(c.extra["modality"] for c in clips)
    assert kinds == {"av": 1, "video+audio": 2, "audio": 2, "video": 1}

    paired = by_name["02-01-05-02-02-01-01"]
    assert paired.video.name == "02-01-05-02-02-01-01.mp4"
    assert paired.audio.name == "03-01-05-02-02-01-01.flac"
    # the 03- file starts 1600 samples @ 48 kHz later in the recording: add it to its clock
    assert paired.audio_offset_s == pytest.approx(1600 / 48_000) == EXPORT_OFFSET_S
    assert (paired.label, paired.speaker, paired.extra["intensity"]) == (
        "angry",
        "Actor_01",
        "strong",
    )
    assert paired.text == "Dogs are sitting by the door"

    av = by_name["01-01-01-01-01-01-01"]
    assert av.audio is None and av.audio_offset_s == 0.0  # its own, in-sync audio track
    audio_only = by_name["03-01-04-01-01-02-02"]
    assert audio_only.video is None and audio_only.audio_offset_s == 0.0
    assert audio_only.extra["sex"] == "female"
    assert by_name["02-01-08-01-01-01-02"].audio is None  # silent video-only take

    reasons = {s.path.name: s.reason for s in clips.skipped}
    assert set(reasons) == {"03-01-09-01-01-01-01.flac", "notes.wav", "03-01-04-01-01-01-01.mp4"}
    assert "emotion" in reasons["03-01-09-01-01-01-01.flac"]
    assert "not an audio file" in reasons["03-01-04-01-01-01-01.mp4"]


def test_ravdess_one_per_take_keeps_full_av_and_reports_twins(ravdess_tree):
    clips = load_dataset("ravdess", list(ravdess_tree))
    takes = [c.extra["take"] for c in clips]
    assert len(takes) == len(set(takes)) == 5
    assert "01-01-01-01-01-01-01" in {c.name for c in clips}  # full-AV preferred
    same_take = [s for s in clips.skipped if "same take" in s.reason]
    assert {s.path.name for s in same_take} == {
        "02-01-01-01-01-01-01.mp4",
        "03-01-01-01-01-01-01.flac",
    }


def test_ravdess_options_modalities_channels_and_duplicates(ravdess_tree, tmp_path):
    speech, video = ravdess_tree
    audio = load_dataset("ravdess", [speech, video], modalities=["audio"], channels=["speech"])
    assert all(c.video is None for c in audio)
    assert {c.extra["channel"] for c in audio} == {"speech"}
    assert len(audio) == 3  # three speech 03- files parse (the song one is excluded)

    copy = _wav(tmp_path / "copy" / "03-01-04-01-01-02-02.wav")
    again = load_dataset("ravdess", [speech, copy.parent], modalities=["audio"])
    assert any(s.path == copy and "duplicate" in s.reason for s in again.skipped)

    loop = speech / "Actor_01" / "loop"
    loop.symlink_to(speech, target_is_directory=True)  # a symlink cycle must not hang the scan
    assert len(load_dataset("ravdess", speech, modalities=["audio"], channels=["speech"])) == 3

    with pytest.raises(EsvaError, match="does not exist"):
        load_dataset("ravdess", tmp_path / "missing")
    with pytest.raises(EsvaError, match="modalities"):
        load_dataset("ravdess", speech, modalities=["smell"])


# ------------------------------------------------------------------------------ EmoDB
def test_emodb_names(tmp_path):
    for stem in ("03a01Wa", "16b10Lb", "08a02Nc"):
        _touch(tmp_path / "wav" / f"{stem}.wav")
    _touch(tmp_path / "wav" / "99a01Wa.wav")  # unknown speaker
    _touch(tmp_path / "wav" / "03a01Xa.wav")  # unknown emotion letter
    clips = load_dataset("emodb", tmp_path)
    by = {c.name: c for c in clips}
    assert set(by) == {"03a01Wa", "16b10Lb", "08a02Nc"}
    assert (by["03a01Wa"].label, by["03a01Wa"].speaker, by["03a01Wa"].extra["sex"]) == (
        "anger",
        "03",
        "male",
    )
    assert by["16b10Lb"].label == "boredom" and by["16b10Lb"].extra["sex"] == "female"
    assert by["03a01Wa"].text == "Der Lappen liegt auf dem Eisschrank."
    assert sorted(s.path.name for s in clips.skipped) == ["03a01Xa.wav", "99a01Wa.wav"]


# ------------------------------------------------------------------------------ CREMA-D
def test_cremad_names_media_and_demographics(tmp_path):
    _touch(tmp_path / "AudioWAV" / "1001_DFA_ANG_XX.wav")
    _touch(tmp_path / "VideoFlash" / "1001_DFA_ANG_XX.flv")
    _touch(tmp_path / "AudioWAV" / "1002_IEO_HAP_HI.wav")
    _touch(tmp_path / "AudioMP3" / "1002_IEO_HAP_HI.mp3")
    _touch(tmp_path / "AudioWAV" / "1003_XYZ_SAD_LO.wav")  # unknown sentence
    (tmp_path / "VideoDemographics.csv").write_text(
        "ActorID,Age,Sex,Race,Ethnicity\n1001,51,Male,Caucasian,Not Hispanic\n"
        "1002,21,Female,Caucasian,Not Hispanic\n"
    )
    clips = load_dataset("cremad", tmp_path)
    by = {c.name: c for c in clips}
    assert set(by) == {"1001_DFA_ANG_XX", "1002_IEO_HAP_HI"}
    first = by["1001_DFA_ANG_XX"]
    assert first.video.suffix == ".flv" and first.audio is None  # video with its own track
    assert (first.label, first.speaker, first.text) == ("anger", "1001", "Don't forget a jacket")
    assert first.extra["sex"] == "male" and first.extra["level"] == "unspecified"
    assert by["1002_IEO_HAP_HI"].audio.suffix == ".wav"  # lossless preferred over mp3
    assert [s.path.name for s in clips.skipped] == ["1003_XYZ_SAD_LO.wav"]
    audio_only = load_dataset("cremad", tmp_path, modalities=["audio"])
    assert all(c.video is None and c.audio.suffix == ".wav" for c in audio_only)


# ------------------------------------------------------------------------------ MELD
MELD_HEADER = "Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode\n"


def _meld(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "train_sent_emo.csv").write_text(
        MELD_HEADER
        + '1,"Oh, hi!",Ross,joy,positive,0,0,1,1\n2,Hey.,Rachel,neutral,neutral,0,1,1,1\n'
    )
    (root / "dev_sent_emo.csv").write_text(MELD_HEADER + "1,What?,Joey,surprise,positive,0,0,2,3\n")
    (root / "test_sent_emo.csv").write_text(MELD_HEADER + "1,Ew.,Monica,disgust,negative,0,0,3,4\n")
    return root


def test_meld_text_only_and_with_media(tmp_path):
    root = _meld(tmp_path / "meld")
    clips = load_dataset("meld", root)
    assert [c.name for c in clips] == [
        "train_dia0_utt0",
        "train_dia0_utt1",
        "dev_dia0_utt0",
        "test_dia0_utt0",
    ]
    assert [c.split for c in clips] == ["train", "train", "val", "test"]
    assert clips[0].text == "Oh, hi!" and clips[0].speaker == "Ross" and clips[0].label == "joy"
    assert all(c.video is None for c in clips) and not clips.skipped
    assert len(load_dataset("meld", root, splits=["test"])) == 1

    media = tmp_path / "MELD.Raw"
    _touch(media / "train_splits" / "dia0_utt0.mp4")
    _touch(media / "dev_splits_complete" / "dia0_utt0.mp4")
    _touch(media / "output_repeated_splits_test" / "dia0_utt0.mp4")
    with_media = load_dataset("meld", root, media_root=media)
    assert len(with_media) == 3 and all(c.video.is_file() for c in with_media)
    assert [s.path.name for s in with_media.skipped] == ["dia0_utt1.mp4"]


def test_meld_bad_csvs_name_the_file(tmp_path):
    root = _meld(tmp_path / "meld")
    (root / "dev_sent_emo.csv").write_text("Utterance,Speaker,Emotion\nhi,Joey,joy\n")
    with pytest.raises(EsvaError, match=r"dev_sent_emo\.csv: wrong MELD columns.*Dialogue_ID"):
        load_dataset("meld", root)
    _meld(root)
    (root / "test_sent_emo.csv").write_text(MELD_HEADER + "1,Hm.,Ross,bored,neutral,0,0,1,1\n")
    with pytest.raises(EsvaError, match=r"test_sent_emo\.csv: line 2: unknown emotion 'bored'"):
        load_dataset("meld", root)
    (root / "test_sent_emo.csv").unlink()
    with pytest.raises(EsvaError, match="not found"):
        load_dataset("meld", root)


# ------------------------------------------------------------------------------ MER
def test_mer2024_labels_videos_transcripts(tmp_path):
    (tmp_path / "label-disdim.csv").write_text(
        "name,discrete,valence\nsample_1,happy,2.5\nsample_2,Worried,-1\nsample_3,sad,-3\n"
    )
    (tmp_path / "label-transcription.csv").write_text(
        "name,chinese,english\nsample_1,你好,Hello there\nsample_2,嗯,Hmm\n"
    )
    _touch(tmp_path / "video-labeled" / "sample_1.mp4")
    _touch(tmp_path / "video-labeled" / "sample_2.avi")
    clips = load_dataset("mer2024", tmp_path, split="train")
    assert [(c.name, c.label, c.valence, c.text) for c in clips] == [
        ("sample_1", "happy", 2.5, "Hello there"),
        ("sample_2", "worried", -1.0, "Hmm"),
    ]
    assert clips[1].video.suffix == ".avi" and clips[0].split == "train"
    assert [s.path.name for s in clips.skipped] == ["sample_3.mp4"]
    chinese = load_dataset(
        "mer2023", tmp_path / "label-disdim.csv", media=False, language="chinese"
    )
    assert len(chinese) == 3 and chinese[0].text == "你好" and chinese[2].video is None


def test_mer_bad_labels(tmp_path):
    (tmp_path / "label-disdim.csv").write_text("name,discrete\nsample_1,joy\n")
    with pytest.raises(EsvaError, match=r"label-disdim\.csv: unknown class names \['joy'\]"):
        load_dataset("mer2024", tmp_path, media=False)
    (tmp_path / "label-disdim.csv").write_text("name,emotion\nsample_1,happy\n")
    with pytest.raises(EsvaError, match="wrong CSV columns"):
        load_dataset("mer2024", tmp_path, media=False)
    with pytest.raises(EsvaError, match="not found"):
        load_dataset("mer2024", tmp_path / "empty_dir_that_is_missing.csv")


# ------------------------------------------------------------------------------ MERR
def _merr(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    coarse = {
        "sample_00000047": {"AU_list": ["AU06", "AU12"], "caption": "Lips pulled up; bright tone."},
        "sample_00000167": {"caption": "Brows lowered."},
    }
    fine = {"sample_00000047": {"smp_reason_caption": "She smiles while praising: happy."}}
    (root / "MERR_coarse_grained.json").write_text(json.dumps(coarse, ensure_ascii=False))
    (root / "MERR_fine_grained.json").write_text(json.dumps(fine))
    (root / "MERR_coarse_grained.txt").write_text(
        "sample_00000047 35 happy 1.2\nsample_00000167 40 doubt\n"
    )
    (root / "transcription_en_all.csv").write_text("name,sentence\nsample_00000047,Well done!\n")
    _touch(root / "video" / "sample_00000047.mp4")
    _touch(root / "video" / "sample_00000167.avi")
    return root


def test_merr_reads_captions_labels_and_round_trips(tmp_path):
    root = _merr(tmp_path / "merr")
    clips = load_dataset("merr", root)
    by = {c.name: c for c in clips}
    assert by["sample_00000047"].extra == {
        "caption": "Lips pulled up; bright tone.",
        "smp_reason_caption": "She smiles while praising: happy.",
    }
    assert (by["sample_00000047"].label, by["sample_00000047"].text) == ("happy", "Well done!")
    assert (
        by["sample_00000167"].label == "doubt"
        and "smp_reason_caption" not in by["sample_00000167"].extra
    )

    # edit, write both granularities and the label list, read back
    by["sample_00000167"].extra["caption"] = "Brows lowered, head tilted."
    base = read_merr_json(root / "MERR_coarse_grained.json")
    out = tmp_path / "out"
    write_merr_json(
        out / "MERR_coarse_grained.json", merr_entries_from_clips(clips, "coarse", base)
    )
    write_merr_json(out / "MERR_fine_grained.json", merr_entries_from_clips(clips, "fine"))
    write_merr_labels(out / "MERR_coarse_grained.txt", clips)
    again = load_dataset("merr", out, media=False, transcripts=root / "transcription_en_all.csv")
    assert [(c.name, c.label, c.extra, c.text) for c in again] == [
        (c.name, c.label, c.extra, c.text) for c in clips
    ]
    # the entries' other fields survive the round trip
    assert read_merr_json(out / "MERR_coarse_grained.json")["sample_00000047"]["AU_list"] == [
        "AU06",
        "AU12",
    ]
    # a lossless file round trip, non-ASCII included
    entries = {"x": {"caption": "très content ☺", "peak_index": 3}}
    write_merr_json(tmp_path / "u.json", entries)
    assert read_merr_json(tmp_path / "u.json") == entries


def test_merr_bad_files(tmp_path):
    root = _merr(tmp_path / "merr")
    (root / "MERR_coarse_grained.txt").write_text("sample_00000047 35 ecstatic\n")
    with pytest.raises(EsvaError, match=r"MERR_coarse_grained\.txt: line 1: unknown label"):
        load_dataset("merr", root)
    (root / "MERR_coarse_grained.txt").unlink()
    (root / "MERR_fine_grained.json").write_text("[1, 2]")
    with pytest.raises(EsvaError, match=r"MERR_fine_grained\.json: MERR JSON must be an object"):
        load_dataset("merr", root)
    (root / "MERR_fine_grained.json").write_text("{not json")
    with pytest.raises(EsvaError, match="not valid JSON"):
        load_dataset("merr", root)
    with pytest.raises(EsvaError, match="no MERR JSON"):
        load_dataset("merr", tmp_path)


# ------------------------------------------------------------------------------ generic CSV
def test_generic_csv_checks_media_and_columns(tmp_path):
    _touch(tmp_path / "a.mp4")
    _wav(tmp_path / "b.wav")
    (tmp_path / "clips.csv").write_text(
        "path,label,speaker,sex\na.mp4,happy,s1,F\nb.wav,sad,s2,M\ngone.mp4,sad,s2,M\n"
    )
    clips = load_dataset("generic", tmp_path)
    assert [(c.name, c.label, c.speaker, c.extra.get("sex")) for c in clips] == [
        ("a", "happy", "s1", "f"),
        ("b", "sad", "s2", "m"),
    ]
    assert clips[1].audio is not None and clips[1].video is None
    assert [(s.path.name, s.reason) for s in clips.skipped] == [
        ("gone.mp4", "media file not found")
    ]
    (tmp_path / "bad.csv").write_text("file,label\na.mp4,happy\n")
    with pytest.raises(EsvaError, match=r"bad\.csv: expected columns path"):
        load_dataset("generic", tmp_path / "bad.csv")


# ------------------------------------------------------------------------------ real data
@pytest.mark.shared
def test_real_ravdess_speech_counts(shared_data):
    clips = load_dataset("ravdess", shared_data / "ravdess_speech")
    assert len(clips) == 1200 and not clips.skipped
    per_actor = Counter(c.speaker for c in clips)
    assert len(per_actor) == 20 and set(per_actor.values()) == {60}
    for actor in per_actor:
        labels = Counter(c.label for c in clips if c.speaker == actor)
        assert labels["neutral"] == 4
        assert {n for label, n in labels.items() if label != "neutral"} == {8}
        assert len(labels) == 8
    assert all(c.audio.suffix == ".flac" and c.video is None for c in clips)


@pytest.mark.shared
def test_real_ravdess_av_pairing_actor01(shared_data):
    roots = [shared_data / "ravdess_speech" / "Actor_01", shared_data / "ravdess_av" / "Actor_01"]
    every = load_dataset("ravdess", roots, one_per_take=False)
    kinds = Counter(c.extra["modality"] for c in every)
    assert kinds["av"] == 7 and kinds["video+audio"] == 11
    assert kinds["audio"] == 60 - 11  # the takes without a video twin
    for clip in every:
        if clip.extra["modality"] == "video+audio":
            assert clip.audio.stem == "03" + clip.video.stem[2:] and clip.audio.is_file()
    one = load_dataset("ravdess", roots)
    assert len(one) == 60 and len({c.extra["take"] for c in one}) == 60


@pytest.mark.shared
def test_real_ravdess_export_offset_by_cross_correlation(shared_data):
    """The 03- file's sample n is the full-AV track's sample n + offset (the documented sign)."""
    from scipy.signal import correlate

    from esva.media import load_audio

    take = "01-01-01-01-01-01"
    av = load_audio(shared_data / "ravdess_av" / "Actor_01" / f"01-{take}.mp4")
    solo = load_audio(shared_data / "ravdess_speech" / "Actor_01" / f"03-{take}.flac")
    corr = correlate(av.samples, solo.samples, mode="full", method="fft")
    lag = int(np.argmax(corr)) - (len(solo.samples) - 1)  # solo[n] ~ av[n + lag]
    measured = lag / av.sample_rate + av.start_s - solo.start_s
    assert measured == pytest.approx(EXPORT_OFFSET_S, abs=1.5 / av.sample_rate)


@pytest.mark.shared
def test_real_meld_split_sizes(shared_data):
    clips = load_dataset("meld", shared_data / "meld")
    assert Counter(c.split for c in clips) == {"train": 9989, "val": 1109, "test": 2610}
    assert len({c.name for c in clips}) == len(clips)
    assert all(c.video is None and c.text and c.speaker for c in clips)
