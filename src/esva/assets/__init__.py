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
    "config.json": "6a9946caea357d94448393bf784ea0b56edd03653fab33f1bb8fc6aacd4125ab",
    "extraction.json": "c90bf1933fb604424f54d56e4b5359ae13c5cfa888a67aa71d41f0b0256a58bc",
    "model.safetensors": "3b05f8b1e84860cdeb47fa6924c6f69852063a58d547e811ca5b0fed96d955f4",
}
# sha256 of the fusion settings (fusion.json: the voice model + face expert late fusion,
# chosen by benchmarks/fusion_dev.py, which prints it). Kept apart from the model's own files,
# which benchmarks/train_default_model.py rebuilds.
DEFAULT_FUSION_SHA256: dict[str, str] = {
    "fusion.json": "f0882dfe22b105e883bbd5ad529b4ba3fab654f113c667fa1206b5dd872457aa",
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


# The explanation adapter of ``esva explain`` (SmolLM2-135M-Instruct projectors + LoRA, see
# esva.llm.adapter), as printed by benchmarks/train_explain_adapter.py.
EXPLAIN_ADAPTER = "explain_adapter"
EXPLAIN_ADAPTER_SHA256: dict[str, str] = {
    "adapter.json": "fbdcc948ecd3b85bae7f2c42ae06de754be5d3fbf77cefd10983400b5f7a98b8",
    "adapter_config.json": "f5a5c588a463c356065e2800dcda3b627497a90cc32bbaf0e5d23761a725d5f0",
    "adapter_model.safetensors": "6f06fef0ddf14d39c2eba7a5f4742c90d469be4a66b90cb00757b9bbc8aa12f9",
    "esva_llm.json": "f44740cd6e546676cf3af68c576d2b13a74eb336d76df9742ca2a02f175d6728",
    "feature_stats.safetensors": "88624fb61a312f9ddb6010252f0179befc56f81651cdfb7900b5b8b032d56fc2",
    "projector.safetensors": "e0a7a3478022c762711b42a54c8394db0d441e7275909439c1a91b03ad1b230a",
}


def explain_adapter_dir(verify: bool = True) -> Path:
    """The shipped explanation adapter's folder, hash-checked unless ``verify=False``."""
    directory = Path(__file__).resolve().parent / EXPLAIN_ADAPTER
    if verify:
        verify_files(directory, EXPLAIN_ADAPTER_SHA256)
    return directory


__all__ = [
    "DEFAULT_FUSION_SHA256",
    "DEFAULT_MODEL_SHA256",
    "EXPLAIN_ADAPTER_SHA256",
    "VOICE_REFERENCE_SHA256",
    "default_model_dir",
    "explain_adapter_dir",
    "verify_files",
    "voice_reference_path",
]
