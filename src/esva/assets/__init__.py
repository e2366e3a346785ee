"""Files shipped inside the package: the default ESVA model that ``esva predict`` uses.

``default_model_dir()`` is the folder of that model: ``config.json``, ``model.safetensors`` and
``extraction.json`` (how its features were extracted: Whisper tiny.en layer 2, audio only; the
same file every trained model folder carries, see esva.extract.provenance) and ``fusion.json``
(how that voice model is fused with the face expert, esva.fusion.spec), with ``MODEL_CARD.md``
beside them (training data, licence, label set, cross-validated scores and known limits). Every
file is checked against the sha256 recorded below before it is used, so a truncated or altered
install fails with one line naming the file instead of silently giving different predictions.

The weights were built by ``python benchmarks/train_default_model.py`` (fixed
seed, fixed clip order, one thread); that script prints the hashes to record here. They were
trained on RAVDESS (CC BY-NC-SA 4.0), so the weights are for non-commercial use only.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from esva.errors import EsvaError
from esva.hashing import file_sha256

DEFAULT_MODEL = "default_model"

# sha256 of each shipped file, as printed by benchmarks/train_default_model.py.
DEFAULT_MODEL_SHA256: dict[str, str] = {
    "config.json": "01a33a82a43c05484c808ffdafcb1160e5f7a8b3695b7862c51bf92703089db8",
    "extraction.json": "36cf0b8d7c7af8b9499b5c9ba5f36adc5373bef3ff273f58857506b4e9422941",
    "model.safetensors": "0dc148a98bcef90c79bcd807830cf6093da37e3a18812091a786333852acdff6",
}
# sha256 of the fusion settings (fusion.json: the voice model + face expert late fusion,
# chosen by benchmarks/fusion_dev.py, which prints it). Kept apart from the model's own files,
# which benchmarks/train_default_model.py rebuilds.
DEFAULT_FUSION_SHA256: dict[str, str] = {
    "fusion.json": "70605a6171bb368ed90e65bba6d59f1e9f905b810df66f1b129833e21321d155",
}


def verify_files(directory: str | Path, expected: Mapping[str, str]) -> Path:
    """Check that ``directory`` holds each file of ``expected`` with that sha256."""
    directory = Path(directory)
    for name, sha in expected.items():
        path = directory / name
        if not path.is_file():
            raise EsvaError("file of the shipped model is missing; reinstall esva", path)
        if file_sha256(path) != sha:
            raise EsvaError(
                "file of the shipped model does not match its recorded sha256 (corrupted or "
                "altered); reinstall esva",
                path,
            )
    return directory


def default_model_dir(verify: bool = True) -> Path:
    """The shipped default model's folder, hash-checked unless ``verify=False``."""
    directory = Path(__file__).resolve().parent / DEFAULT_MODEL
    if verify:
        verify_files(directory, DEFAULT_MODEL_SHA256)
        verify_files(directory, DEFAULT_FUSION_SHA256)
    return directory


# The voice reference of ``esva explain`` (median neutral RAVDESS clip per voice register), as
# written by benchmarks/voice_reference.py.
VOICE_REFERENCE = "voice_reference.json"
VOICE_REFERENCE_SHA256 = "eeec270fdb70b47a622bccf01781e5d52bf1a36aa7652ec50f89d518d9086d55"


def voice_reference_path() -> Path:
    """The shipped voice reference file, hash-checked."""
    directory = Path(__file__).resolve().parent
    return verify_files(directory, {VOICE_REFERENCE: VOICE_REFERENCE_SHA256}) / VOICE_REFERENCE


__all__ = [
    "DEFAULT_FUSION_SHA256",
    "DEFAULT_MODEL_SHA256",
    "VOICE_REFERENCE_SHA256",
    "default_model_dir",
    "verify_files",
    "voice_reference_path",
]
