"""Empirical Robustness Score (``ers``, ``ers@PROFILE``) from robrank's rob28/rob224 swipe."""

from __future__ import annotations

import json
import math
import pathlib
import re
from collections.abc import Callable
from typing import Any

from metrics import METRICS
from metrics.base import EvalInputs, Metric
from utilities.errors import ConfigError

ERS_PROFILES = ("rob28", "rob224", "cvpr")
SUBSET_KEY = "_subset"  # a swipe of the first batches only: {"attack_batches": N, "attack_bs": B}
_HEAD = re.compile(r"^(\w+)(?::|$)")
_PM = re.compile(r":pm=([+-])(?::|$)")

# term: (attack TYPE, pm, summary key, raw = scale·value, normalised score from raw)
ERS_TERMS: dict[str, tuple[str, str | None, str, float, Callable[[float], float]]] = {
    "CA+": ("CA", "+", "CA+:prank", 100.0, lambda raw: 2.0 * raw),
    "CA-": ("CA", "-", "CA-:prank", 100.0, lambda raw: 100.0 - raw),
    "QA+": ("QA", "+", "QA+:prank", 100.0, lambda raw: 2.0 * raw),
    "QA-": ("QA", "-", "QA-:prank", 100.0, lambda raw: 100.0 - raw),
    "TMA": ("TMA", None, "Cosine-SIM", 1.0, lambda raw: 100.0 * (1.0 - raw)),
    "ES:D": ("ES", None, "embshift", 1.0, lambda raw: 100.0 * (2.0 - raw) / 2.0),
    "ES:R": ("ES", None, "r@1", 1.0, lambda raw: raw),  # robrank reports it in percent
    "LTM": ("LTM", None, "r@1", 100.0, lambda raw: raw),
    "GTM": ("GTM", None, "r@1", 100.0, lambda raw: raw),
    "GTT": ("GTT", None, "retain@4", 100.0, lambda raw: raw),
}


def ers_terms(swipe: dict[str, Any], source: str = "swipe") -> dict[str, tuple[float, float]]:
    """``{term: (raw value, normalised score)}`` of the ten ERS terms (robustness.md §3.2).

    ``swipe`` is ``{attack_string: [benign_summary, adversarial_summary]}`` (ours or robrank's);
    the adversarial summaries are read. Raw values: 100·prank for CA±/QA±, the cosine for TMA,
    the shift for ES:D, R@1 in percent (ES:R) and 100·r@1 (LTM, GTM), 100·retain@4 (GTT).
    """
    terms = {}
    for term, (kind, pm, key, scale, normalise) in ERS_TERMS.items():
        value = None
        for string, summaries in swipe.items():
            head, sign = _HEAD.match(string), _PM.search(string)
            if head and head.group(1) == kind and (pm is None or (sign and sign.group(1) == pm)):
                value = summaries[-1].get(key) if summaries else None
                break
        if value is None:
            raise ConfigError(
                f"--ers: {source} has no {term} result ({kind} attack with key {key!r}); expected "
                "a rob28/rob224 swipe {attack_string: [benign, adversarial]}"
            )
        raw = scale * float(value)
        terms[term] = (raw, normalise(raw))
    return terms


def ers_score(terms: dict[str, tuple[float, float]]) -> float:
    """ERS = the arithmetic mean of the ten normalised scores (no clipping)."""
    return sum(score for _, score in terms.values()) / len(terms)


def read_swipe(path: str | pathlib.Path) -> dict[str, Any]:
    """A swipe JSON file; ConfigError naming ``--ers`` when it is missing or malformed:
    ``{attack_string: [benign, adversarial]}`` with numbers as the summaries' values (and our
    ``_subset`` record of a partial swipe)."""
    path = pathlib.Path(path)
    try:
        content = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ConfigError(f"--ers: cannot read swipe JSON {path}: {error}") from None
    expected = "expected {attack_string: [benign, adversarial]} summaries of numbers"
    if not isinstance(content, dict):
        raise ConfigError(f"--ers: {path} holds a {type(content).__name__}; {expected}")
    for string, summaries in content.items():
        if string == SUBSET_KEY:
            continue
        if not isinstance(summaries, list) or not all(isinstance(s, dict) for s in summaries):
            raise ConfigError(f"--ers: {path}: {string!r} is not a list of summaries; {expected}")
        for summary in summaries:
            for key, value in summary.items():
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise ConfigError(
                        f"--ers: {path}: {string!r} has {key} = {value!r}, not a number; {expected}"
                    )
    return content


def format_ers_table(terms: dict[str, tuple[float, float]]) -> str:
    """The ten terms (raw and normalised) and a last line ``ERS <value>`` (one decimal)."""
    lines = [f"{'term':<6}  {'raw':>9}  {'score':>7}"]
    lines += [f"{term:<6}  {raw:>9.3f}  {score:>7.1f}" for term, (raw, score) in terms.items()]
    lines.append(f"ERS {ers_score(terms):.1f}")
    return "\n".join(lines)


@METRICS.register("ers")
class EmpiricalRobustnessScore(Metric):
    """Empirical Robustness Score (Zhou et al., "Enhancing Adversarial Robustness for Deep
    Metric Learning", CVPR 2022): mean of ten normalised attack results, in [0,100] (ideal 100).

        ERS = (1/10)·[2·CA+ + (100−CA−) + 2·QA+ + (100−QA−) + 100(1−cos_TMA)
                      + 50(2−ES:D) + ES:R + LTM + GTM + GTT]

    from the nine attacks of the ``rob28`` profile (28-px inputs) or ``rob224`` (otherwise), or
    the profile named after ``@`` (``ers@rob224``), on the evaluated split with ``--seed``.
    Costs 9×33 forward/backward passes over the split.
    """

    requires = frozenset({"model"})
    arg_name = "profile"

    def __init__(self, arg: str | None = None) -> None:
        self.arg = arg
        if arg is not None and arg not in ERS_PROFILES:
            self.reject(f"ers or ers@profile with a profile among {', '.join(ERS_PROFILES)}")

    def compute(self, inputs: EvalInputs) -> float:
        from attacks.profiles import profile
        from attacks.runner import AttackRunner

        model = inputs.model
        size = model.input_spec.size if hasattr(model, "input_spec") else 224
        name = self.arg or ("rob28" if size <= 28 else "rob224")
        device = next(model.parameters()).device
        runner = AttackRunner(
            model,
            inputs.dataset,
            device=device,
            batch_size=128 if size <= 28 else 112,
            seed=inputs.seed,
            progress=False,
        )
        terms = ers_terms(runner.swipe(profile(name)), f"the {name} swipe")
        score = ers_score(terms)
        return score if math.isfinite(score) else float("nan")


__all__ = ["ERS_TERMS", "ers_score", "ers_terms", "format_ers_table", "read_swipe"]
