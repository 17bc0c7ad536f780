"""Swipe profiles: robrank's named lists of attack strings (robustness.md §3.3).

``rob28``/``rob224`` are the nine attacks of the Empirical Robustness Score (ε = 77/255 for
28-px inputs, 8/255 for 224-px, α = 3/255, 32 iterations, W = M = 1); ``cvpr`` is ``rob224``.
``pami*``, ``eccv*`` and ``qccurve28`` sweep CA/SPQA over W/M and ε as in the papers. The
strings are robrank's (``robrank/cmdline.py``, class ``Swipe``) character for character, so the
swipe JSON keys match the reference tool's.
"""

from __future__ import annotations

from utilities.errors import ConfigError


def _ranking(kind: str, counts: tuple[int, ...], settings: list[tuple[str, str, int]]) -> list:
    key = "W" if kind == "CA" else "M"
    return [
        f"{kind}:pm={pm}:{key}={count}:eps={eps}:alpha={alpha}:pgditer={steps}"
        for pm in "+-"
        for count in counts
        for eps, alpha, steps in settings
    ]


def robustness_profile(eps: str, alpha: str = "0.011764", steps: int = 32) -> list[str]:
    """The nine ERS attacks: CA±, QA± (W = M = 1), TMA, ES, LTM, GTM, GTT."""
    tail = f"eps={eps}:alpha={alpha}:pgditer={steps}"
    return [
        *(f"CA:pm={pm}:W=1:{tail}" for pm in "+-"),
        *(f"QA:pm={pm}:M=1:{tail}" for pm in "+-"),
        *(f"{kind}:{tail}" for kind in ("TMA", "ES", "LTM", "GTM", "GTT")),
    ]


def _pami(settings: list[tuple[str, str, int]]) -> list[str]:
    return _ranking("SPQA", (1, 2, 5, 10), settings) + _ranking("CA", (1, 2, 5, 10), settings)


def _qccurve() -> list[str]:
    """ε = 7i/255 (i = 0..11) with robrank's step α = max(1, round(7i/25))/255, both "%.5f"
    (``cmdline.Swipe.profile_qccurve28``; robustness.md §3.3 gives α = 0.011764, which the
    reference's strings do not use)."""
    strings = []
    for kind, key in (("CA", "W"), ("SPQA", "M")):
        for pm in "+-":
            for i in range(12):
                eps, alpha = 7 * i / 255, max(1, round(7 * i / 25)) / 255
                strings.append(f"{kind}:pm={pm}:{key}=1:eps={eps:.5f}:alpha={alpha:.5f}:pgditer=32")
    return strings


_ECCV28 = [("0.01", "0.003922", 10), ("0.03", "0.003922", 15), ("0.1", "0.01", 20),
           ("0.3", "0.01", 30)]  # fmt: skip
_ECCV224_CA = [("0.01", "0.003922", 24), ("0.03", "0.003922", 15), ("0.06", "0.006", 20)]
_ECCV224_SPQA = [("0.01", "0.003922", 10), ("0.03", "0.003922", 15), ("0.06", "0.006", 20)]

PROFILES: dict[str, list[str]] = {
    "rob28": robustness_profile("0.30196"),
    "rob224": robustness_profile("0.03137"),
    "cvpr": robustness_profile("0.03137"),
    "pami28": _pami([("0.03137", "0.003922", 32), ("0.30196", "0.011764", 32)]),
    "pami224": _pami([("0.00784", "0.003922", 32), ("0.03137", "0.011764", 32)]),
    "eccv28": _ranking("CA", (1, 2, 5, 10), _ECCV28) + _ranking("SPQA", (1, 2, 5, 10), _ECCV28),
    "eccv224": _ranking("CA", (1, 2, 5, 10), _ECCV224_CA)
    + _ranking("SPQA", (1, 2, 5, 10), _ECCV224_SPQA),
    "qccurve28": _qccurve(),
}


def profile(name: str) -> list[str]:
    """The attack strings of swipe profile ``name``; ConfigError naming ``--swipe`` otherwise."""
    if name not in PROFILES:
        raise ConfigError(
            f"--swipe: unknown profile {name!r}; expected one of {', '.join(PROFILES)}"
        )
    return list(PROFILES[name])
