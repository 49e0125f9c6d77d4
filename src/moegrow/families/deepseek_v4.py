"""DeepSeek-V4 (``deepseek_v4``), in its original on-disk names (``attn``, ``ffn``,
``experts.{e}.w1/w2/w3``): every layer is an MoE with a shared expert, routed by an elementwise
score (``scoring_func``, ``sqrtsoftplus`` by default) and always renormalised over the chosen.
The first layers (``mlp_layer_types`` ``hash_moe``) choose by a token -> expert table
(``ffn.gate.tid2eid`` ``[vocab, k]``, rewritten to list every copy by width growth), the others
by score + ``ffn.gate.bias`` (copied exactly). Layers join ``hc_mult`` residual streams by
hyper-connections whose stream mixing (a Sinkhorn-normalised softmax plus eps) is never the
identity, so a zero-initialised depth copy cannot be one: ``--zero-init`` is refused."""

from moegrow.families.base import Experts, Family, Router
from moegrow.families.layouts import DEEPSEEK_COUNT_KEYS

FAMILY = Family(
    name="deepseek_v4",
    model_types=("deepseek_v4",),
    experts=Experts(
        count_keys=DEEPSEEK_COUNT_KEYS,
        top_k_keys=("num_experts_per_tok",),
        per_expert=("ffn.experts.{e}.*",),
        down=("ffn.experts.{e}.w2.*",),
    ),
    router=Router(
        weight="ffn.gate.weight",
        balance_biases=("ffn.gate.bias",),
        hash_tables=("ffn.gate.tid2eid",),
        scoring="sqrtsoftplus",
        renormalize=True,
    ),
    residual=("attn.wo_b.*", "ffn.experts.{e}.w2.*", "ffn.shared_experts.w2.*"),
    required_global=("model.embed_tokens.weight", "model.norm.weight"),
    required_layer=("attn_norm.weight", "attn.wo_b.weight"),
    per_layer_lists=("layer_types", "mlp_layer_types"),
    mtp_key="num_nextn_predict_layers",
    depth_not_exact=(
        "each layer mixes its hc_mult residual streams by hyper-connections (a "
        "Sinkhorn-normalised softmax plus hc_eps), which no weights make the identity, so a "
        "zero-initialised copy still changes the stream"
    ),
    dense_ffn=("ffn.shared_experts.w1.weight", "ffn.shared_experts.w3.weight"),
)
