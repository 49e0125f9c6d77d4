"""Every MoE causal-LM model type of the installed transformers, built tiny once and grown width
x2 ``--noise 0``, depth x2 ``--zero-init`` and both: declared families must stay exact (or refuse
width growth cleanly), undeclared ones are reported, and docs/FAMILIES.md must be current."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import pytest

from moegrow.conformance.check import check_all
from moegrow.conformance.discovery import causal_lm_model_types, discover
from moegrow.conformance.table import markdown
from moegrow.families import BY_MODEL_TYPE

DOC = Path(__file__).parent.parent / "docs" / "FAMILIES.md"


@pytest.fixture(scope="session")
def survey(tmp_path_factory):
    """Discovery and the three growths of every MoE model type, done once per session."""
    start = time.perf_counter()
    found = discover()
    moe = [d.model_type for d in found if d.status == "moe"]
    reports = check_all(moe, tmp_path_factory.mktemp("conformance"))
    print(f"\nconformance: {len(moe)} MoE model types in {time.perf_counter() - start:.1f} s")
    return found, reports


def test_discovery_finds_the_known_moe_types(survey):
    found, _ = survey
    assert [d.model_type for d in found] == causal_lm_model_types()
    status = {d.model_type: d.status for d in found}
    for t in ("mixtral", "qwen3_moe", "deepseek_v3", "gpt_oss", "granitemoe"):
        assert status[t] == "moe", t
    for t in ("llama", "qwen3", "mistral"):
        assert status[t] == "dense", t


def test_declared_families_are_exact(survey):
    """Every growth of a declared family is exact, or refused in one line (PhiMoE's width,
    Jamba's interposition, MiniMax's ``--zero-init``): never grown wrongly."""
    _, reports = survey
    declared = {t: r for t, r in reports.items() if t in BY_MODEL_TYPE}
    assert declared
    wrong, unbuilt = [], []
    for t, r in declared.items():
        if r.error:  # the generic builder cannot make it; its own fixtures test it
            unbuilt.append(f"{t}: {r.error}")
        wrong += [f"{t}: {o.line()}" for o in r.outcomes if o.status not in ("exact", "refused")]
    assert not wrong, "\n".join(wrong)
    if unbuilt:
        warnings.warn("declared but not built tiny here: " + "; ".join(unbuilt), stacklevel=1)


def test_undeclared_moe_types_are_reported(survey):
    _, reports = survey
    todo = sorted(t for t in reports if t not in BY_MODEL_TYPE)
    for t in todo:
        assert all(o.status == "refused" for o in reports[t].outcomes) or reports[t].error, t
    if todo:
        warnings.warn(
            f"{len(todo)} MoE model types not declared yet: {', '.join(todo)}", stacklevel=1
        )


def test_families_md_is_current(survey):
    found, reports = survey
    assert DOC.read_text() == markdown(found, reports, BY_MODEL_TYPE), (
        "docs/FAMILIES.md is stale: run `moegrow families --markdown > docs/FAMILIES.md`"
    )


def test_families_cli_names_a_bad_model_type(run_cli):
    code, _, err = run_cli("families", "check", "no_such_type")
    assert code == 2
    assert "'no_such_type' is not a causal-LM model type" in err


def test_families_cli_check_prints_deltas(run_cli):
    code, out, _ = run_cli("families", "check", "mixtral")
    assert code == 0
    assert "width  exact    |delta logits|" in out and "depth  exact" in out
