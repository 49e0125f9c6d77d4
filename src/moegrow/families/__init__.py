"""Model families, each declared as data in its own module; :func:`family_for` picks one."""

from __future__ import annotations

from moegrow.errors import CheckpointError
from moegrow.families import (
    afmoe,
    axk1,
    deepseek_v2,
    deepseek_v3,
    deepseek_v32,
    dense,
    dots1,
    exaone_moe,
    flex_olmo,
    glm4_moe,
    glm4_moe_lite,
    glm_moe_dsa,
    gpt_oss,
    granitemoe,
    hunyuan_v1_moe,
    llama4,
    mimo_v2_flash,
    minimax_m2,
    mixtral,
    moegrow_moe,
    olmoe,
    phimoe,
    qwen2_moe,
    qwen3_moe,
    solar_open,
)
from moegrow.families.base import Experts, Family, Router

FAMILIES: tuple[Family, ...] = (
    mixtral.FAMILY,
    qwen2_moe.FAMILY,
    qwen3_moe.FAMILY,
    moegrow_moe.FAMILY,
    olmoe.FAMILY,
    deepseek_v2.FAMILY,
    deepseek_v3.FAMILY,
    granitemoe.FAMILY,
    gpt_oss.FAMILY,
    llama4.FAMILY,
    phimoe.FAMILY,
    hunyuan_v1_moe.FAMILY,
    minimax_m2.FAMILY,
    flex_olmo.FAMILY,
    exaone_moe.FAMILY,
    afmoe.FAMILY,
    axk1.FAMILY,
    deepseek_v32.FAMILY,
    dots1.FAMILY,
    glm4_moe.FAMILY,
    glm4_moe_lite.FAMILY,
    glm_moe_dsa.FAMILY,
    mimo_v2_flash.FAMILY,
    solar_open.FAMILY,
    dense.LLAMA,
    dense.QWEN,
)

BY_MODEL_TYPE: dict[str, Family] = {t: f for f in FAMILIES for t in f.model_types}


def supported_model_types() -> list[str]:
    return sorted(BY_MODEL_TYPE)


def family_for(config: dict, *, where: str = "config.json") -> Family:
    """The family declared for ``config["model_type"]``."""
    model_type = config.get("model_type")
    family = BY_MODEL_TYPE.get(model_type)  # type: ignore[arg-type]
    if family is None:
        raise CheckpointError(
            f"{where}: model_type {model_type!r} is not supported; supported model types: "
            f"{', '.join(supported_model_types())}"
        )
    return family


__all__ = ["BY_MODEL_TYPE", "FAMILIES", "Experts", "Family", "Router", "family_for"]
