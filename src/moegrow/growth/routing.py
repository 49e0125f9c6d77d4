"""Which width growths keep a router's output exactly, and what that takes.

With every expert duplicated and top-k multiplied by the same factor M, each original choice of
k experts becomes the choice of all M*k copies (the copies' logits tie). What each copy then
weighs decides exactness (ECOSYSTEM.md §2.5, measured on transformers 5.24):

- softmax over all experts (renormalised or not): each copy gets p/M, the copies sum to p;
- top-k then softmax over the chosen: the M copies share the old weight; exact;
- sigmoid with renormalisation: the M copies share the old weight; exact;
- sigmoid without renormalisation: every copy keeps the full score, so the layer output is
  multiplied by M unless each copy's down-projection is divided by M (done here);
- weights divided by their p-norm (DBRX, p = ``moe_normalize_expert_weights``): the M copies'
  norm is M^(1/p) / M times the old one, so each copy weighs M^(-1/p) times the old weight and
  the M copies M^(1 - 1/p) times it: exact when each copy's down-projection is multiplied by
  M^(1/p - 1) (1 for p = 1, done here);
- group-limited routing (DeepSeek): exact when the groups are multiplied too and copies are
  appended, so that every group has an identical twin group;
- a selection-only bias added to the scores (``e_score_correction_bias``, Ernie 4.5's
  ``moe_statics``) must move with the scores: the M copies of a softmax probability p score p/M
  each, so the bias copies are scaled by 1/M (``p/M + b/M`` orders the copies as ``p + b``
  ordered the originals); sigmoid scores do not change, so the bias is copied exactly;
- experts the router scores after the routed ones (LongCat's identity "zero" experts, Inkling's
  shared experts in the weight normalisation) are duplicated too: each copy of such an expert
  then scores like a routed copy (p/M under softmax; the same sigmoid, with a normaliser M times
  larger), so every expert, routed or extra, keeps its total weight;
- hash routing (DeepSeek-V4's ``tid2eid``: token t goes to the k experts of row t): the table
  lists every copy of the k experts (``[vocab, M*k]``), so that the weights, renormalised over
  the chosen, are shared by the copies; exact with top-k multiplied by M, refused otherwise;
- PhiMoE's sparsemixer is hard-wired to two experts: it cannot be grown exactly (refused).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from moegrow.errors import GrowthError
from moegrow.families.base import Family, config_get
from moegrow.growth.spec import GrowthSpec


@dataclass
class WidthRules:
    num_experts: int
    top_k: int
    new_top_k: int
    down_scale: float = 1.0
    """Factor on every copy's down-projection (1/M for sigmoid routers without renormalisation)."""
    balance_bias_scale: float = 1.0
    """Factor on every copy of a selection bias: the factor by which duplication scales the
    scores it is added to (:data:`SCORE_SCALE`)."""
    extra_experts: int = 0
    """X experts scored by the router after the routed ones, duplicated with them."""
    scale_groups: bool = False
    exact: bool = True
    reasons: list[str] = field(default_factory=list)
    """Why the growth is not function-preserving (empty when exact)."""
    notes: list[str] = field(default_factory=list)


#: Per scoring: the factor by which duplicating every expert M times scales each expert's score
#: (a softmax over M times as many equal terms; an elementwise sigmoid is unchanged).
SCORE_SCALE = {
    "softmax": lambda m: 1.0 / m,
    "sigmoid": lambda m: 1.0,
    "sqrtsoftplus": lambda m: 1.0,
    "softmax_topk": lambda m: 1.0,
}
#: Scorings that score each expert alone (by its own logit), as sigmoid does.
ELEMENTWISE = ("sigmoid", "sqrtsoftplus")


def renormalizes(family: Family, config: dict) -> bool:
    assert family.router is not None
    r = family.router.renormalize
    if isinstance(r, bool):
        return r
    value = config_get(family.text_of(config), r)
    return family.router.renormalize_default if value is None else bool(value)


def scoring(family: Family, config: dict) -> str:
    """The router's scoring for this config: the family's, unless its ``scoring_key`` says."""
    assert family.router is not None
    return family.router.scoring_for(family.text_of(config))


def width_rules(family: Family, config: dict, spec: GrowthSpec) -> WidthRules:
    """Check a width growth against the family's router and decide the config and tensor edits."""
    if family.experts is None or family.router is None:
        raise GrowthError(
            f"--width {spec.width}: {family.name} is a dense family (no experts to duplicate); "
            "only depth growth is supported for it"
        )
    router = family.router
    router_scoring = scoring(family, config)
    text = family.text_of(config)  # raw keys of the text model's config
    if router_scoring == "sparsemixer":
        raise GrowthError(
            f"--width {spec.width}: {family.name}'s sparsemixer router is hard-wired to top-2, "
            "so duplicated experts cannot be routed like the originals; width growth is refused "
            "for this family (depth growth works)"
        )
    if family.width_refused:
        raise GrowthError(f"--width {spec.width}: {family.name}: {family.width_refused}")
    num_experts, top_k = family.expert_counts(config)
    m = spec.width
    new_e = num_experts * m
    if spec.top_k == "scale":
        new_k = top_k * m
    elif spec.top_k == "keep":
        new_k = top_k
    else:
        new_k = int(spec.top_k)
    if new_k > new_e:
        raise GrowthError(
            f"--top-k: {new_k} experts per token is more than the {new_e} experts after growth"
        )
    if router.hash_tables and new_k != top_k * m:
        raise GrowthError(
            f"--top-k: {family.name}'s hash-routed layers send each token to the {top_k} experts "
            f"of its table row, whose {top_k * m} copies must all be chosen: pass --top-k scale "
            f"({top_k * m} experts per token), not {new_k}"
        )
    rules = WidthRules(num_experts=num_experts, top_k=top_k, new_top_k=new_k)
    rules.extra_experts = family.extra_experts(config)
    if rules.extra_experts:
        keys = "/".join(family.experts.extra_count_keys)
        rules.notes.append(
            f"the {rules.extra_experts} expert(s) the router scores after the routed ones "
            f"({keys}) are duplicated with them, so that each keeps its total weight"
        )
    if router.balance_biases:
        rules.balance_bias_scale = SCORE_SCALE[router_scoring](m)
        if rules.balance_bias_scale != 1.0:
            rules.notes.append(
                f"{router_scoring} scores of {m} copies are 1/{m} of the original's: the "
                f"selection-bias copies are scaled by 1/{m} so that they choose the same experts"
            )

    if router.norm_p_key is not None:
        p = config_get(text, router.norm_p_key)
        if p is not None:
            if isinstance(p, bool) or not isinstance(p, (int, float)) or not p > 0:
                raise GrowthError(
                    f"config.json: {router.norm_p_key} must be a positive number (the p of the "
                    f"router weights' p-norm) or null, got {p!r}"
                )
            rules.down_scale = m ** (1.0 / p - 1.0)
            if rules.down_scale != 1.0:
                rules.notes.append(
                    f"router weights divided by their {p:g}-norm: every copy's down-projection "
                    f"is scaled by {m}^(1/{p:g} - 1) = {rules.down_scale:.6g} so that the {m} "
                    "copies of an expert add up to the original"
                )
    elif router_scoring in ELEMENTWISE and not renormalizes(family, config):
        rules.down_scale = 1.0 / m
        rules.notes.append(
            f"sigmoid router without renormalisation: every copy's down-projection is scaled by "
            f"1/{m} so that the {m} copies of an expert add up to the original"
        )
    if router.group_keys:
        n_group_key, topk_group_key = router.group_keys
        n_group = text.get(n_group_key)
        topk_group = text.get(topk_group_key)
        if isinstance(n_group, int) and isinstance(topk_group, int):
            rules.scale_groups = True
            if new_e % (n_group * m):
                raise GrowthError(
                    f"--width: {new_e} experts cannot be split into {n_group * m} groups"
                )
            per_group = new_e // (n_group * m)
            if new_k > topk_group * m * per_group:
                raise GrowthError(
                    f"--top-k: {new_k} experts per token exceed the {topk_group * m} groups x "
                    f"{per_group} experts that group-limited routing can choose from"
                )
            uses_groups = n_group > 1 and text.get("topk_method") != "greedy"
            if uses_groups and spec.expert_order != "append":
                rules.exact = False
                rules.reasons.append(
                    "group-limited routing with --expert-order interleave: groups no longer have "
                    "identical twins (use append for an exact growth)"
                )
    if spec.noise > 0:
        rules.exact = False
        rules.reasons.append(f"--noise {spec.noise}: copies differ from their originals by design")
    if spec.router == "random":
        rules.exact = False
        rules.reasons.append("--router random: new experts get random router rows")
    if spec.router == "random-all":
        rules.exact = False
        rules.reasons.append("--router random-all: the whole router is re-initialised")
    if spec.balance_bias_noise and spec.noise > 0 and family.router.balance_biases:
        rules.exact = False
        rules.reasons.append("--balance-bias-noise: the copies' selection biases get noise")
    if new_k != top_k * m:
        rules.exact = False
        rules.reasons.append(
            f"top-k {top_k} -> {new_k}, not {top_k * m}: copies cannot all be chosen together"
        )
    return rules
