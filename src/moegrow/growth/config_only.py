"""Plan a growth from ``config.json`` alone, before downloading any weights.

The tensor names and shapes a checkpoint would hold are derived from the config: transformers
builds the model on the meta device (no memory) and its load-time conversions are reverted, so
the names are those on disk (per-expert tensors where the model fuses them in memory). Only
``moegrow plan`` and ``moegrow flops`` accept such a folder; ``moegrow grow`` needs the weights.
"""

from __future__ import annotations

from pathlib import Path

from moegrow.errors import CheckpointError
from moegrow.io.bounded_json import read_json
from moegrow.io.checkpoint import CONFIG_NAME, INDEX_FILE, SINGLE_FILE, Checkpoint
from moegrow.io.config_check import INT_FIELDS, MAX_DIM, MAX_EXPERTS, MAX_LAYERS
from moegrow.io.safetensors_io import DTYPE_SIZES, TensorInfo, numel

NOTE = "plan from config.json only (no weights): tensor names and shapes derived from the config"
_DTYPES = {"bfloat16": "BF16", "float16": "F16", "float32": "F32", "float64": "F64"}


def has_weights(folder: Path) -> bool:
    return (
        any((folder / n).exists() for n in (SINGLE_FILE, INDEX_FILE))
        or any(folder.glob("*.safetensors"))
        or any(folder.glob("*.bin"))
    )


class ConfigOnlyCheckpoint:
    """What :class:`~moegrow.io.checkpoint.Checkpoint` offers a plan (``folder``, ``config``,
    ``tensors``), with the tensor headers synthesised from the config; no data can be read."""

    config_only = True

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.config: dict = read_json(self.folder / CONFIG_NAME, error=CheckpointError)
        self.weight_files: list[Path] = []
        self.tensors = synthesised_headers(self.folder, self.config)

    def __enter__(self) -> ConfigOnlyCheckpoint:
        return self

    def __exit__(self, *exc) -> None:
        pass

    def close(self) -> None:
        pass


def open_for_plan(folder: str | Path) -> Checkpoint | ConfigOnlyCheckpoint:
    """The checkpoint in ``folder``, or, where the folder holds a config.json and no weights, one
    synthesised from the config (for ``plan`` and ``flops`` only)."""
    path = Path(folder)
    if path.is_dir() and (path / CONFIG_NAME).is_file() and not has_weights(path):
        return ConfigOnlyCheckpoint(path)
    return Checkpoint(path)


def synthesised_headers(folder: Path, config: dict) -> dict[str, TensorInfo]:
    """On-disk tensor names and shapes of the model ``config`` describes."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from moegrow.modeling.variants import register

    register()
    where = folder / CONFIG_NAME
    _check_sizes(config, where)
    try:
        cfg = AutoConfig.from_pretrained(folder)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(cfg)
    except Exception as e:  # transformers' config validation raises many types
        raise CheckpointError(
            f"{where}: transformers cannot build the model it describes "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); without weights "
            "the plan needs a config transformers can build"
        ) from None
    state = model.state_dict()
    try:
        from transformers.core_model_loading import revert_weight_conversion

        state = revert_weight_conversion(model, state)
    except ImportError:  # an older or newer transformers: in-memory names
        pass
    nested = config.get("text_config")
    text: dict = nested if isinstance(nested, dict) else config
    dtype_name = str(text.get("dtype") or text.get("torch_dtype") or config.get("dtype") or "")
    dtype = _DTYPES.get(dtype_name.removeprefix("torch."), "BF16")
    out: dict[str, TensorInfo] = {}
    for name, t in state.items():
        shape = tuple(int(d) for d in t.shape)
        nbytes = numel(shape) * DTYPE_SIZES[dtype]
        out[name] = TensorInfo(name, dtype, shape, folder / SINGLE_FILE, 0, nbytes)
    return out


def _check_sizes(config: dict, where: Path) -> None:
    """Bound the sizes a meta-device model is built from (its tensor count grows with them)."""
    nested = config.get("text_config")
    text: dict = nested if isinstance(nested, dict) else config
    for key, minimum in INT_FIELDS.items():
        value = text.get(key)
        if value is None:
            continue
        limit = MAX_LAYERS if "layers" in key else MAX_EXPERTS if "experts" in key else MAX_DIM
        if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= limit:
            raise CheckpointError(
                f"{where}: {key} must be an integer in {minimum}..{limit}, got {value!r}"
            )
