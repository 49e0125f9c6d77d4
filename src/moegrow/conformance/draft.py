"""Draft a family declaration from a tiny instance, for a human to review and complete.

From the saved tensors and config of a tiny instance (:mod:`moegrow.conformance.tiny`, 4 experts,
top-2) it infers: which tensors carry an expert index in their name (per-expert templates), which
hold all experts on axis 0 (fused), which ``[E, H]`` tensor is the router and which ``[E]``
tensors sit beside it, which config keys hold E and k, and the residual output projections by
their usual names. The router's *scoring* cannot be seen in tensors: the draft says so, and the
modeling source must be read before the declaration is trusted.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from moegrow.conformance.tiny import EXPERT_COUNT_KEYS, NUM_EXPERTS, TOP_K, TOP_K_KEYS

LAYER = re.compile(r"^(?P<prefix>.*?layers\.)(?P<i>\d+)\.(?P<rest>.+)$")
PER_EXPERT = re.compile(r"^(?P<head>.*?experts\.)(?P<e>\d+)\.(?P<tail>.+)$")
RESIDUAL_NAMES = re.compile(r"(o_proj|down_proj|w2|output_linear|out_proj|c_proj|dense_4h_to_h)")


def draft(model_type: str) -> str:
    """Python source of a draft ``Family`` for ``model_type``."""
    from safetensors import safe_open

    from moegrow.conformance.tiny import build_tiny

    model = build_tiny(model_type)
    hidden = model.config.get_text_config().hidden_size
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        shapes: dict[str, tuple[int, ...]] = {}
        for f in sorted(Path(tmp).glob("*.safetensors")):
            with safe_open(f, "pt") as h:
                shapes |= {k: tuple(h.get_slice(k).get_shape()) for k in h.keys()}
    cfg = model.config.to_dict()
    prefix, per_expert, fused, routers, biases, residual = None, set(), set(), set(), set(), set()
    for name, shape in sorted(shapes.items()):
        m = LAYER.match(name)
        if not m:
            continue
        prefix, rest = m.group("prefix"), m.group("rest")
        pe = PER_EXPERT.match(rest)
        if pe:
            per_expert.add(pe.group("head") + "{e}.*")
            template = pe.group("head") + "{e}." + pe.group("tail").rsplit(".", 1)[0] + ".*"
        elif "expert" in rest and "shared" not in rest and shape[:1] == (NUM_EXPERTS,):
            fused.add(rest.rsplit(".", 1)[0] + ".*" if rest.endswith("bias") else rest)
            template = rest
        elif shape == (NUM_EXPERTS, hidden):
            routers.add(rest)
            continue
        elif shape == (NUM_EXPERTS,):
            biases.add(rest)
            continue
        else:
            template = rest.rsplit(".", 1)[0] + ".*"
        if RESIDUAL_NAMES.search(rest):
            residual.add(template)
    count = [k for k in EXPERT_COUNT_KEYS if cfg.get(k) == NUM_EXPERTS]
    top_k = [k for k in TOP_K_KEYS if cfg.get(k) == TOP_K]
    lines = [
        f'"""{model_type}: DRAFT inferred from a tiny instance. Read the modeling source for the',
        'router scoring before trusting it."""',
        "",
        "from moegrow.families.base import Experts, Family, Router",
        "",
        "FAMILY = Family(",
        f"    name={model_type!r},",
        f"    model_types=({model_type!r},),",
        "    experts=Experts(",
        f"        count_keys={tuple(count)!r},",
        f"        top_k_keys={tuple(top_k)!r},",
        f"        per_expert={tuple(sorted(per_expert))!r},",
        f"        fused={tuple(sorted(fused))!r},",
        f"        down={tuple(sorted(t for t in residual if '{e}' in t or t in fused))!r},",
        "    ),",
        f"    router=Router(weight={next(iter(sorted(routers)), '?')!r},"
        f" biases={tuple(sorted(biases))!r},  # which [E] tensors only steer selection?",
        '        scoring="?"),  # softmax / softmax_topk / sigmoid: read the modeling source',
        f"    residual={tuple(sorted(residual))!r},",
    ]
    if prefix and prefix != "model.layers.":
        lines.append(f"    layer_prefix={prefix!r},")
    lines.append(")")
    return "\n".join(lines)
