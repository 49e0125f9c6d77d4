"""ZAYA (``zaya``): CCA attention (convolved q/k, a delayed value state), experts fused on disk
(``gate_up_proj`` ``[E, 2I, H]``, ``down_proj`` ``[E, H, I]``), each residual add scaled
(``(h + hb) * hs + (r + rb) * rs``), and a router MLP whose output scores the E experts plus a
skip choice (E + 1 rows, balancing biases added to the probabilities for selection) and whose
state is carried from layer to layer (every layer but the first adds the previous layer's state
times ``router_states_scale``).

A zero-initialised depth copy is an identity: its output projections and ``hs`` are zeroed,
``rs`` set to 1 and ``rb`` to 0, and its router state passed on unchanged (``down_proj`` zeroed,
``router_states_scale`` 1). Width growth is refused (see ``width_refused``)."""

from moegrow.families.base import Experts, Family, Router

_SCALINGS = ("post_attention_residual_scale", "post_mlp_residual_scale")

FAMILY = Family(
    name="zaya",
    model_types=("zaya",),
    experts=Experts(
        count_keys=("num_experts",),
        top_k_keys=("num_experts_per_tok",),
        fused=("mlp.experts.gate_up_proj*", "mlp.experts.down_proj*"),
        down=("mlp.experts.down_proj*",),
    ),
    router=Router(
        weight="mlp.gate.router_mlp.out_proj.weight",
        balance_biases=("mlp.gate.balancing_biases",),
        scoring="softmax",
        renormalize=False,
        extra_rows=1,
    ),
    residual=(
        "self_attn.o_proj.*",
        "mlp.experts.down_proj*",
        *(f"{s}.hidden_states_scale" for s in _SCALINGS),
        "mlp.gate.down_proj.*",  # the router state's branch
    ),
    identity_init=(
        *((f"{s}.residual_scale", 1.0) for s in _SCALINGS),
        *((f"{s}.residual_bias", 0.0) for s in _SCALINGS),
        ("mlp.gate.router_states_scale", 1.0),
    ),
    later_layers_only=(("mlp.gate.router_states_scale", 1.0),),
    width_refused=(
        "transformers' ZAYA routes each token to exactly one expert (num_experts_per_tok must "
        "be 1), and duplicated experts cannot be routed like the originals anyway: the softmax "
        "over the experts and the skip choice gives a copy p / (2 - p_skip) instead of p, a "
        "factor that depends on the input, so no fixed scaling of the copies restores the "
        "output, and the balancing biases then pick other choices; width growth is refused for "
        "this family (depth growth works)"
    ),
)
