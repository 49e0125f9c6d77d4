"""How a model family is declared: tensor-name templates and config keys, as data.

Templates are layer-relative tensor names (the part after ``model.layers.{i}.``) in which
``{e}`` stands for an expert index and a trailing ``*`` for any suffix, so one template covers a
weight, its bias and quantisation siblings (``weight_scale_inv``, ``_blocks``/``_scales``).
Expert axes are declared, never guessed: per-expert templates name the expert in the tensor
name; fused templates name tensors whose axis 0 is the expert axis (true of every family on disk).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from functools import cache, cached_property

from moegrow.errors import MoegrowError


@cache
def compile_template(template: str) -> re.Pattern[str]:
    """``"mlp.experts.{e}.*"`` -> a regex whose group ``e`` captures the expert index."""
    prefix_only = template.endswith("*")
    body = template[:-1] if prefix_only else template
    pattern = re.escape(body).replace(re.escape("{e}"), r"(?P<e>\d+)")
    return re.compile(pattern + (".*" if prefix_only else "") + r"\Z")


def matches(templates: tuple[str, ...], name: str) -> bool:
    return any(compile_template(t).match(name) for t in templates)


def config_get(config: dict, key: str) -> object:
    """``config[key]``, where a dotted key is a path into nested dicts (DBRX keeps its expert
    count in ``ffn_config.moe_num_experts``); None when any step is absent."""
    value: object = config
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


@dataclass(frozen=True)
class Router:
    """The router of an MoE layer and how it scores experts."""

    weight: str
    """Router weight ``[E, H]``: one row per expert."""
    more_weights: tuple[str, ...] = ()
    """Router weights ``[E, H]`` of further expert sets of the same layer, counted by the same
    config keys and scored alike (JetMoE's mixture-of-attention router): grown like ``weight``."""
    biases: tuple[str, ...] = ()
    """Learned per-expert router biases ``[E]`` (copies get noise like the weight rows)."""
    balance_biases: tuple[str, ...] = ()
    """Load-balancing biases ``[E]`` that only steer selection (DeepSeek-V3
    ``e_score_correction_bias``): added to the scores, so scaled like them (copied exactly for
    sigmoid scores, scaled by 1/M for softmax scores: :mod:`moegrow.growth.routing`)."""
    balance_bias_row: bool = False
    """The balance biases are stored as one row ``[1, E]`` (Ernie 4.5's ``moe_statics``)."""
    hash_tables: tuple[str, ...] = ()
    """Token -> expert tables ``[vocab, k]`` of hash-routed layers (DeepSeek-V4's ``tid2eid``):
    such a layer routes token t to the k experts of row t; width growth lists every copy."""
    scoring: str = "softmax"
    """``softmax``: softmax over all experts, then top-k; ``softmax_topk``: top-k of the logits,
    then softmax over the k; ``sigmoid``: sigmoid scores of the chosen experts
    (``sqrtsoftplus``: DeepSeek-V4's ``sqrt(softplus(x))``, another score of each expert alone);
    ``sparsemixer``: PhiMoE's fixed top-2 sampler (cannot be grown exactly)."""
    scoring_key: str | None = None
    """Config key whose value, when present, overrides ``scoring`` (``router_scoring`` of
    ``moegrow_moe``, one family with either router)."""
    scoring_values: tuple[tuple[str, str], ...] = ()
    """``(config value, scoring)`` pairs for a ``scoring_key`` whose values are not spelled like
    the scorings above (Cohere2-MoE's ``expert_selection_fn="softmax"`` is ``softmax_topk``)."""
    renormalize: bool | str = True
    """Whether the chosen experts' weights are renormalised to sum to 1, or the config key that
    says so (``norm_topk_prob``)."""
    renormalize_default: bool = False
    """Value assumed when the ``renormalize`` key is absent from config.json."""
    group_keys: tuple[str, str] | None = None
    """``(n_group, topk_group)`` config keys of group-limited routing, scaled with the experts."""
    norm_p_key: str | None = None
    """Config key of p where the chosen weights are divided by their p-norm (DBRX's
    ``ffn_config.moe_normalize_expert_weights``; null: not renormalised); overrides
    ``renormalize``."""
    extra_rows: int = 0
    """Router rows after the experts' that score a choice other than an expert (ZAYA's skip
    expert): the router weight and its ``[E]`` biases have ``E + extra_rows`` entries."""

    def scoring_for(self, config: dict) -> str:
        """The scoring of this config: ``scoring``, unless ``scoring_key`` names another."""
        value = config.get(self.scoring_key) if self.scoring_key else None
        if not isinstance(value, str):
            return self.scoring
        return dict(self.scoring_values).get(value, value)


@dataclass(frozen=True)
class LayerPeriod:
    """A config field ``key`` = p by which the config class derives ``layer_types`` when
    config.json has none: layer i is ``every`` if ``(i + 1) % p == 0``, else ``other``
    (Qwen3-Next's ``full_attention_interval``, Bailing's ``layer_group_size``, sliding-window
    patterns such as ``global_attn_every_n_layers``)."""

    key: str
    other: str
    every: str
    default: int
    """p when config.json leaves ``key`` out (the config class's default)."""
    drop: bool = False
    """Remove ``key`` once ``layer_types`` is explicit (a key the config class only pops from
    its arguments and would otherwise keep as a stale attribute)."""


@dataclass(frozen=True)
class Experts:
    """Where an MoE layer's experts live on disk and which config keys count them."""

    count_keys: tuple[str, ...]
    """Config keys holding the number of routed experts (every spelling present is updated)."""
    top_k_keys: tuple[str, ...]
    """Config keys holding the number of experts each token is routed to."""
    per_expert: tuple[str, ...] = ()
    """Templates with ``{e}``: tensors that belong to one expert each."""
    fused: tuple[str, ...] = ()
    """Templates of tensors holding all experts stacked on axis 0."""
    per_top_k_keys: tuple[str, ...] = ()
    """Config keys whose value is a multiple of top-k (JetMoE's ``num_attention_heads``, which
    its config class derives as ``num_key_value_heads x num_experts_per_tok``): rescaled with
    top-k so that config.json stays consistent."""
    down: tuple[str, ...] = ()
    """Templates of the experts' output projections (with biases): halved on both copies when a
    router without renormalisation would otherwise count a duplicated expert twice."""
    fused_rows_key: str | None = None
    """Config key of the rows each expert holds in the fused tensors, where these concatenate
    the experts along axis 0 (DBRX's ``w1`` ``[E * I, H]``, I = ``ffn_config.ffn_hidden_size``);
    None where axis 0 is the expert axis itself."""
    extra_count_keys: tuple[str, ...] = ()
    """Config keys counting X experts the router scores after the E routed ones (LongCat's
    weightless identity experts ``zero_expert_num``, Inkling's shared experts that sink the
    weight normalisation ``n_shared_experts``): the router's rows are ``[E + X]``, and width
    growth duplicates the X like the routed experts (their copies come after the routed ones)."""
    extra: tuple[str, ...] = ()
    """Templates of tensors stacking the X extra experts on axis 0 (``[X, ...]``)."""
    extra_identity: bool = False
    """The extra experts are weightless identities (LongCat's zero experts): nothing in a
    zero-initialised copy silences them, so ``--zero-init`` is refused when X > 0."""


@dataclass(frozen=True)
class Family:
    """A model family: everything growth needs to know about its checkpoints."""

    name: str
    model_types: tuple[str, ...]
    residual: tuple[str, ...]
    """Templates of every residual-branch output projection of a layer (attention out-proj,
    expert / shared-expert / dense down-proj, with biases); ``--zero-init`` zeroes them in copied
    layers so that a copy adds nothing to the residual stream."""
    experts: Experts | None = None
    router: Router | None = None
    layer_prefix: str = "model.layers."
    num_layers_key: str = "num_hidden_layers"
    required_global: tuple[str, ...] = ("model.embed_tokens.weight", "model.norm.weight")
    required_layer: tuple[str, ...] = ("input_layernorm.weight", "self_attn.o_proj.weight")
    embedding: str = "model.embed_tokens.weight"
    per_layer_lists: tuple[str, ...] = ("layer_types",)
    """Config lists with one entry per layer (``layer_types``, ``no_rope_layers``)."""
    layer_index_lists: tuple[str, ...] = ()
    """Config lists of layer indices (``mlp_only_layers``, ``moe_layers``)."""
    index_rules: tuple[str, ...] = ()
    """Config fields derived from layer indices that code must rewrite (``decoder_sparse_step``,
    ``interleave_moe_layer_step``, ``first_k_dense_replace``, ``max_window_layers``,
    ``num_dense_layers``) or that describe layer kinds otherwise than by a list (``mlp_layer_types``
    from ``first_k_dense_replace``, ``linear_attn_config``, ``hybrid_override_pattern``,
    ``jamba_periods``, ``per_layer_config`` keyed by layer index); each is handled in
    :mod:`moegrow.growth.config_edit` or :mod:`moegrow.growth.hybrid_rules`, and read back by
    :mod:`moegrow.families.kinds`."""
    mtp_key: str | None = None
    """Config key counting multi-token-prediction layers stored after the main layers."""
    post_norm_key: tuple[str, str] | None = None
    """``(config key, value)`` meaning the layers are post-norm (``norm(x + f(x))``): a
    zero-initialised depth copy still applies its norms, so it is not function-preserving."""
    layer_types_period: LayerPeriod | None = None
    """The period by which the config class derives ``layer_types`` when config.json has none;
    made an explicit ``layer_types`` before depth growth."""
    layer_types_cycle: tuple[str, ...] = ()
    """The cycle of layer kinds the config class repeats when config.json has no
    ``layer_types`` (LaRA-mini); made explicit before depth growth."""
    ignored_prefixes: tuple[str, ...] = ()
    """Tensor-name prefixes of modules stored beside the model that transformers does not load
    (``mtp.``: Qwen3-Next's and Nemotron-H's multi-token prediction): copied unchanged, never
    widened or deepened; the plan says so."""
    buffers: tuple[str, ...] = ()
    """Templates of persistent buffers stored beside the weights (MiniMax's lightning-attention
    decays): copied like any tensor, not counted as parameters."""
    injected_layers: tuple[str, ...] = ()
    """Path in config.json to a list whose length k is the number of first text layers after
    which a wrapper adds features by layer index (Qwen3-VL's ``deepstack_visual_indexes``):
    depth growth preserves image inputs only if output layers 0..k-1 are source layers 0..k-1."""
    depth_refused: str = ""
    """Why depth growth cannot be done at all in this family (empty where it can): refused."""
    first_occurrence_modules: tuple[tuple[str, str], ...] = ()
    """``(config key, tensor prefix)``: a module that the layers listed (1-based) under the key
    have and that depth copies are built without (Qwen4-Exp's per-layer n-gram embeddings,
    ``ple_layer_ids`` / ``ple.``, hashed by each such layer's rank, which a copy with one would
    shift): the key keeps the first occurrences only and the copies' tensors are left out."""
    depth_not_exact: str = ""
    """Why a zero-initialised depth copy is not an identity in this family whatever its config
    (empty where it is): ``--zero-init`` is refused; plain copies are planned as not exact."""
    width_refused: str = ""
    """Why width growth cannot be function-preserving in this family (empty where it can):
    refused."""
    identity_init: tuple[tuple[str, float], ...] = ()
    """``(template, value)`` of layer tensors that a ``--zero-init`` copy sets to a constant, on
    top of zeroing ``residual``, so that it is an identity (ZAYA's residual scalings: residual
    scale 1, residual bias 0)."""
    later_layers_only: tuple[tuple[str, float], ...] = ()
    """``(template, initial value)`` of tensors that every layer but the first has (ZAYA's router
    state scale): output layer 0 drops them; a copy of layer 0 placed later gets them at their
    initial value."""
    text_config: str | None = None
    """Key of the nested text-model config of a multimodal wrapper (``text_config``): every
    config field growth reads or edits lives there."""
    notes: str = ""
    unlisted_kinds: tuple[str, ...] = ()
    """Per-layer lists that the config class derives by the layer index, when config.json lacks
    them, by a rule no other field describes (Beam's full attention every sixth layer and at the
    last one): depth growth would move those kinds, so it refuses a config.json without them."""
    shared_indexer: tuple[str, str] | None = None
    """``(per-layer list, tensor prefix)`` of a sparse-attention indexer that a layer runs
    (``"full"``) or skips, reusing the last full layer's top-k (``"shared"``): GLM-5's and Hy4's
    ``("indexer_types", "self_attn.indexer.")``; depth growth follows
    :mod:`moegrow.growth.indexer_rules`."""
    ffn_kind_modules: tuple[str, ...] = ()
    """Layer modules outside the feed-forward one whose tensors differ between dense and MoE
    layers (A.X K2 gates ``post_attention_layernorm`` in MoE layers only): the completeness check
    compares them only between layers of the same feed-forward kind."""
    dense_ffn: tuple[str, ...] = field(
        default=("mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight")
    )
    """Dense MLP matrices (weight-norm profile of dense layers)."""

    def text_of(self, config: dict) -> dict:
        """The part of ``config.json`` that describes the text model (all of it, or the nested
        ``text_config`` of a multimodal wrapper)."""
        if self.text_config is None:
            return config
        nested = config.get(self.text_config)
        return nested if isinstance(nested, dict) else {}

    def layer_count(self, config: dict) -> object:
        """``num_layers_key`` of the text config or, where a config derives the count (Nemotron-H's
        ``layers_block_type``), the length of the first per-layer list present (unchecked)."""
        config = self.text_of(config)
        value = config.get(self.num_layers_key)
        if value is None:
            lists = [config.get(k) for k in self.per_layer_lists]
            value = next((len(v) for v in lists if isinstance(v, list) and v), None)
        return value

    def injected_layer_count(self, config: dict) -> int:
        """k of ``injected_layers`` (0 where the family has none or the config lacks the list)."""
        value: object = config
        for key in self.injected_layers:
            value = value.get(key) if isinstance(value, dict) else None
        return len(value) if self.injected_layers and isinstance(value, list) else 0

    @property
    def is_moe(self) -> bool:
        return self.experts is not None

    def extra_experts(self, config: dict) -> int:
        """X of ``Experts.extra_count_keys``: the experts the router scores after the routed
        ones (0 where the family declares none or the config leaves the key out or null)."""
        if self.experts is None:
            return 0
        config = self.text_of(config)
        key = next((k for k in self.experts.extra_count_keys if _is_int(config.get(k))), None)
        if key is None:
            return 0
        if config[key] < 0:
            raise MoegrowError(f"config.json: {key} must be >= 0, got {config[key]}")
        return int(config[key])

    def expert_counts(self, config: dict) -> tuple[int, int]:
        """(routed experts E, experts per token k) from a config dict, read under the first key
        of the declaration that holds an integer. Raises for a dense family or a config that
        names neither."""
        if self.experts is None:
            raise MoegrowError(f"config.json: {self.name} is a dense family; it has no experts")
        config = self.text_of(config)
        counts = []
        for keys, what in (
            (self.experts.count_keys, "expert count"),
            (self.experts.top_k_keys, "top-k"),
        ):
            key = next((k for k in keys if _is_int(config_get(config, k))), None)
            if key is None:
                raise MoegrowError(
                    f"config.json: no {what} found under any of {', '.join(keys)}; add the count "
                    "the checkpoint was trained with"
                )
            value = config_get(config, key)
            assert isinstance(value, int)
            if value < 1:
                raise MoegrowError(f"config.json: {key} must be >= 1, got {value}")
            counts.append(value)
        return counts[0], counts[1]

    @cached_property
    def layer_regex(self) -> re.Pattern[str]:
        return re.compile(re.escape(self.layer_prefix) + r"(?P<i>\d+)\.(?P<rest>.+)\Z")

    def classify(self, rest: str) -> tuple[str, int | None]:
        """Role of a layer-relative tensor name: ``("expert", e)``, ``("fused", None)``,
        ``("router", None)``, ``("router_bias", None)``, ``("balance_bias", None)``,
        ``("extra", None)``, ``("hash_table", None)`` or ``("plain", None)``."""
        if self.experts is not None and self.router is not None:
            if rest == self.router.weight or rest in self.router.more_weights:
                return "router", None
            if rest in self.router.biases:
                return "router_bias", None
            if rest in self.router.balance_biases:
                return "balance_bias", None
            if rest in self.router.hash_tables:
                return "hash_table", None
            for t in self.experts.per_expert:
                m = compile_template(t).match(rest)
                if m:
                    return "expert", int(m.group("e"))
            if matches(self.experts.extra, rest):
                return "extra", None
            if matches(self.experts.fused, rest):
                return "fused", None
        return "plain", None

    def expert_name(self, rest: str, old: int, new: int) -> str:
        """Rename a per-expert tensor from expert ``old`` to expert ``new``."""
        assert self.experts is not None
        for t in self.experts.per_expert:
            m = compile_template(t).match(rest)
            if m and int(m.group("e")) == old:
                return rest[: m.start("e")] + str(new) + rest[m.end("e") :]
        raise AssertionError(f"{rest} is not a per-expert tensor of expert {old}")

    def is_residual(self, rest: str) -> bool:
        return matches(self.residual, rest)

    def expert_rows(self, config: dict) -> int:
        """Rows of one expert along axis 0 of a fused tensor: 1, or where the experts are
        concatenated (``Experts.fused_rows_key``) that key's value (raises when absent)."""
        key = self.experts.fused_rows_key if self.experts is not None else None
        if key is None:
            return 1
        value = config_get(self.text_of(config), key)
        if not _is_int(value) or value < 1:  # type: ignore[operator]
            raise MoegrowError(
                f"config.json: {key} must be a positive integer (the rows of one expert in the "
                f"fused expert tensors), got {value!r}"
            )
        return value  # type: ignore[return-value]

    def is_down(self, rest: str) -> bool:
        return self.experts is not None and matches(self.experts.down, rest)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def multimodal(text: Family, *, name: str, model_type: str, text_prefix: str) -> Family:
    """The declaration of a multimodal wrapper of ``text`` as it is on disk: the text model's
    ``model.`` tensors lie under ``text_prefix`` and its config under ``text_config``; every
    other tensor (vision tower, projector) is copied unchanged."""

    def moved(tensor: str) -> str:
        return text_prefix + tensor.removeprefix("model.")

    return replace(
        text,
        name=name,
        model_types=(model_type,),
        layer_prefix=moved(text.layer_prefix),
        required_global=tuple(moved(t) for t in text.required_global),
        embedding=moved(text.embedding),
        text_config="text_config",
    )
