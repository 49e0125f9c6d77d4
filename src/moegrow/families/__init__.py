"""Model families, each declared as data in its own module; :func:`family_for` picks one."""

from __future__ import annotations

from moegrow.errors import CheckpointError
from moegrow.families import (
    afmoe,
    aria_text,
    axk1,
    axk2,
    bailing_hybrid,
    beam,
    cohere2_moe,
    dbrx,
    deepseek_v2,
    deepseek_v3,
    deepseek_v4,
    deepseek_v32,
    dense,
    dots1,
    dots3_note,
    ernie4_5_moe,
    exaone_moe,
    flex_olmo,
    glm4_moe,
    glm4_moe_lite,
    glm4v_moe,
    glm_moe_dsa,
    gpt_oss,
    granitemoe,
    granitemoe_swa,
    granitemoehybrid,
    hunyuan_v1_moe,
    hy_v3,
    hy_v4,
    inkling2,
    inkling_text,
    jamba,
    jetmoe,
    kimi_linear,
    kolibri1,
    laguna,
    lara_mini,
    lfm2_moe,
    llama4,
    longcat_flash,
    mellum,
    mimo_v2_flash,
    minimax,
    minimax_m2,
    minimax_m3_vl_text,
    mixtral,
    moegrow_moe,
    nemotron_h,
    olmoe,
    phimoe,
    qwen2_moe,
    qwen3_moe,
    qwen3_next,
    qwen3_vl_moe,
    qwen4_exp,
    sarvam_mla,
    sarvam_moe,
    solar_open,
    zaya,
)
from moegrow.families.base import Experts, Family, LayerPeriod, Router

FAMILIES: tuple[Family, ...] = (
    mixtral.FAMILY,
    qwen2_moe.FAMILY,
    qwen3_moe.FAMILY,
    moegrow_moe.FAMILY,
    olmoe.FAMILY,
    flex_olmo.FAMILY,
    deepseek_v2.FAMILY,
    deepseek_v3.FAMILY,
    granitemoe.FAMILY,
    gpt_oss.FAMILY,
    llama4.FAMILY,
    phimoe.FAMILY,
    jamba.FAMILY,
    nemotron_h.FAMILY,
    granitemoehybrid.FAMILY,
    qwen3_next.QWEN3_NEXT,
    qwen3_next.QWEN3_5_MOE_TEXT,
    qwen3_next.QWEN3_5_MOE,
    kimi_linear.FAMILY,
    bailing_hybrid.FAMILY,
    lfm2_moe.FAMILY,
    minimax.FAMILY,
    lara_mini.FAMILY,
    inkling2.FAMILY,
    llama4.WRAPPED,
    qwen3_vl_moe.FAMILY,
    glm4v_moe.FAMILY,
    hunyuan_v1_moe.FAMILY,
    minimax_m2.FAMILY,
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
    sarvam_moe.FAMILY,
    sarvam_mla.FAMILY,
    axk2.FAMILY,
    laguna.FAMILY,
    beam.FAMILY,
    hy_v3.FAMILY,
    hy_v4.FAMILY,
    dbrx.FAMILY,
    zaya.FAMILY,
    qwen4_exp.FAMILY,
    dots3_note.FAMILY,
    granitemoe_swa.FAMILY,
    cohere2_moe.FAMILY,
    mellum.FAMILY,
    kolibri1.FAMILY,
    jetmoe.FAMILY,
    aria_text.FAMILY,
    ernie4_5_moe.FAMILY,
    inkling_text.FAMILY,
    longcat_flash.FAMILY,
    minimax_m3_vl_text.FAMILY,
    deepseek_v4.FAMILY,
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


__all__ = ["BY_MODEL_TYPE", "FAMILIES", "Experts", "Family", "LayerPeriod", "Router", "family_for"]
