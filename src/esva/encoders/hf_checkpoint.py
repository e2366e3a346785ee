"""Load a transformers model from a local directory or an already-cached hub id, never the network.

esva runs offline: a hub id works only when the user's Hugging Face cache already holds it, and
anything missing is reported as one line that says how to fetch the model on a machine with
internet. The result also says exactly what was loaded (the weights' sha256 and a config hash),
for the :class:`~esva.data.streams.EncoderRecord` stored next to every feature file.
"""

from __future__ import annotations

import json
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from transformers import PretrainedConfig, PreTrainedModel

from esva.errors import EsvaError
from esva.hashing import files_sha256, state_dict_sha256, text_sha256

# Loading order transformers itself uses: safetensors before pickled .bin, an index for shards.
_WEIGHT_NAMES = (
    ("model.safetensors.index.json", True),
    ("model.safetensors", True),
    ("pytorch_model.bin.index.json", False),
    ("pytorch_model.bin", False),
)
# Parameters only used for pre-training-time masking: a checkpoint without them is still whole.
_MISSING_OK = ("masked_spec_embed",)
# sha256 of a weights file, keyed by (path, size, mtime): hashing a 1 GB file takes seconds.


@dataclass
class Checkpoint:
    """A loaded (or randomly initialised) model and what identifies it."""

    model: PreTrainedModel
    source: str  # the local path, the hub id, or "random-init"
    directory: Path | None  # local directory the files came from (None for random init)
    weights_sha256: str
    config_sha256: str
    preprocessor: dict[str, Any] = field(default_factory=dict)  # preprocessor_config.json

    @property
    def version(self) -> str:
        """``source`` plus a short config hash: what goes into ``EncoderRecord.version``."""
        return f"{self.source}#config-{self.config_sha256[:12]}"


def load_checkpoint(
    encoder: str,
    model_class: type[PreTrainedModel],
    *,
    pretrained: bool = True,
    path: str | os.PathLike | None = None,
    model_id: str | None = None,
    config: PretrainedConfig | dict[str, Any] | None = None,
    trust_remote_code: bool = False,
) -> Checkpoint:
    """Load ``model_class`` for the encoder named ``encoder``.

    ``path`` (a local directory) wins over ``model_id`` (a hub id, looked up in the local cache
    only). ``pretrained=False`` builds random weights from ``config`` (a config object or a dict
    of its fields), or from the config found at ``path`` / ``model_id`` when ``config`` is None:
    that is how the tests exercise every code path without a download.
    """
    config_class = _config_class(model_class)
    if not pretrained and config is not None:
        if isinstance(config, dict):
            config = _config_from_dict(config_class, config)
        model = _build(model_class, config, trust_remote_code)
        return Checkpoint(
            model=model,
            source="random-init",
            directory=None,
            weights_sha256=_state_dict_sha256(model),
            config_sha256=_config_sha256(model.config),
        )

    directory, source = _resolve(encoder, path, model_id)
    _check_model_type(encoder, directory, config_class)
    preprocessor = _read_preprocessor(directory)
    try:
        if not pretrained:
            config = config_class.from_pretrained(directory, trust_remote_code=trust_remote_code)
            model = _build(model_class, config, trust_remote_code)
            return Checkpoint(
                model,
                source,
                directory,
                _state_dict_sha256(model),
                _config_sha256(config),
                preprocessor,
            )
        weights, safetensors = _weight_files(encoder, directory)
        model, info = model_class.from_pretrained(
            directory,
            local_files_only=True,
            use_safetensors=safetensors,
            trust_remote_code=trust_remote_code,
            output_loading_info=True,
        )
    except EsvaError:
        raise
    except (
        OSError,
        ValueError,
        KeyError,
        RuntimeError,
        EOFError,
        pickle.UnpicklingError,
        SafetensorError,
    ) as exc:
        # A directory that is not a checkpoint for this model class (wrong model type, truncated
        # file, remote code not trusted): report it, do not show transformers' traceback.
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "custom code" in first:
            first = "it ships its own modelling code: pass trust_remote_code=True if you trust it"
        raise EsvaError(
            f"encoder {encoder!r}: cannot load a model from here ({first})", directory
        ) from exc
    missing = [k for k in info.get("missing_keys", []) if not k.endswith(_MISSING_OK)]
    if missing:
        shown = ", ".join(sorted(missing)[:3])
        raise EsvaError(
            f"encoder {encoder!r}: the checkpoint does not fit {model_class.__name__} "
            f"({len(missing)} weights missing, e.g. {shown})",
            directory,
        )
    model.eval()
    return Checkpoint(
        model=model,
        source=source,
        directory=directory,
        weights_sha256=weights_sha256(weights),
        config_sha256=_config_sha256(model.config),
        preprocessor=preprocessor,
    )


def _build(model_class: type, config: PretrainedConfig, trust_remote_code: bool) -> PreTrainedModel:
    """Random weights for ``config`` (an Auto class picks the model class from the config)."""
    if issubclass(model_class, PreTrainedModel):
        return model_class(config).eval()
    return model_class.from_config(config, trust_remote_code=trust_remote_code).eval()


def _config_from_dict(
    config_class: type[PretrainedConfig], values: dict[str, Any]
) -> PretrainedConfig:
    """A config from its fields; AutoConfig needs a ``model_type`` to know which class."""
    if hasattr(config_class, "for_model"):
        values = dict(values)
        if "model_type" not in values:
            raise EsvaError("a config given as a dict needs 'model_type' for this encoder")
        return config_class.for_model(values.pop("model_type"), **values)
    return config_class(**values)


def _config_class(model_class: type[PreTrainedModel]) -> type[PretrainedConfig]:
    config_class = getattr(model_class, "config_class", None)
    if config_class is None:  # AutoModel: the directory's config.json says which model it is
        from transformers import AutoConfig

        return AutoConfig  # type: ignore[return-value]
    return config_class


def _resolve(
    encoder: str, path: str | os.PathLike | None, model_id: str | None
) -> tuple[Path, str]:
    """Return (local directory, source string) for a path or a cached hub id."""
    if path is not None:
        directory = Path(path).expanduser()
        hint = model_id or "MODEL_ID"
        if not directory.is_dir():
            raise EsvaError(
                f"encoder {encoder!r}: no local model at {directory} and esva never downloads at "
                f"run time; download it on a machine with internet (hf download {hint} "
                f"--local-dir DIR) and pass --path DIR"
            )
        if not (directory / "config.json").is_file():
            raise EsvaError(
                f"encoder {encoder!r}: not a transformers model directory (no config.json)",
                directory,
            )
        return directory.resolve(), str(directory)
    if not model_id:
        raise EsvaError(
            f"encoder {encoder!r}: no model given; pass --path DIR (a local model directory)"
        )
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        snapshot = snapshot_download(model_id, local_files_only=True)
    except (LocalEntryNotFoundError, OSError, ValueError):
        raise EsvaError(
            f"encoder {encoder!r}: no local model for {model_id!r} in the Hugging Face cache and "
            f"the hub is not used at run time; download it on a machine with internet "
            f"(hf download {model_id} --local-dir DIR) and pass --path DIR"
        ) from None
    return Path(snapshot), model_id


def _check_model_type(encoder: str, directory: Path, config_class: type[PretrainedConfig]) -> None:
    """Refuse a checkpoint of another model family before transformers half-loads it."""
    expected = getattr(config_class, "model_type", "")
    if not expected:  # AutoConfig: any model type the directory names
        return
    file = directory / "config.json"
    try:
        found = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EsvaError(f"not valid JSON ({exc})", file) from None
    model_type = found.get("model_type", "")
    # A composite checkpoint (e.g. a full CLIP model) holds the tower this encoder loads.
    nested = getattr(config_class, "base_config_key", "")
    if model_type != expected and not (nested and nested in found):
        raise EsvaError(
            f"encoder {encoder!r} needs a {expected!r} checkpoint, this one is {model_type!r}", file
        )


def _read_preprocessor(directory: Path) -> dict[str, Any]:
    """The directory's ``preprocessor_config.json`` (feature extractor / image processor), or {}."""
    file = directory / "preprocessor_config.json"
    if not file.is_file():
        return {}
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EsvaError(f"not valid JSON ({exc})", file) from None


def _weight_files(encoder: str, directory: Path) -> tuple[list[Path], bool]:
    """The weights file(s) transformers will load from ``directory``, and whether safetensors."""
    for name, safetensors in _WEIGHT_NAMES:
        file = directory / name
        if not file.is_file():
            continue
        if name.endswith(".index.json"):
            index = json.loads(file.read_text(encoding="utf-8"))
            shards = sorted(set(index.get("weight_map", {}).values()))
            return [directory / shard for shard in shards], safetensors
        return [file], safetensors
    raise EsvaError(
        f"encoder {encoder!r}: no weights file (model.safetensors or pytorch_model.bin)", directory
    )


def weights_sha256(files: list[Path]) -> str:
    """sha256 of one weights file; for shards, the sha256 of the shards' names and digests."""
    return files_sha256(files)


def _state_dict_sha256(model: torch.nn.Module) -> str:
    """sha256 of randomly initialised weights (so two random models are told apart)."""
    return state_dict_sha256(model.state_dict())


def _config_sha256(config: PretrainedConfig) -> str:
    """sha256 of the config's fields, without bookkeeping that changes with the library version."""
    fields = {
        key: value
        for key, value in config.to_dict().items()
        if not key.startswith("_") and key not in ("transformers_version", "torch_dtype", "dtype")
    }
    return text_sha256(json.dumps(fields, sort_keys=True, default=str))
