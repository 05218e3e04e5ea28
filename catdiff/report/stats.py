"""Seed statistics and the verdict rule: is a difference between two arms larger than the
seed-to-seed spread?

Each arm is compared with the first on the per-seed values by a two-sided Welch t-test and
the effect size |diff| / s_pooled, s_pooled = sqrt((s_a^2 + s_b^2) / 2): p < 0.05 is *larger
than the seed-to-seed spread*, else *not distinguishable from seed noise* (more seeds could
tell when the effect size is >= 2); no correction for multiple comparisons. p from scipy when
installed, else from the regularized incomplete beta function here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

ALPHA = 0.05
HINT_EFFECT = 2.0


def mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs)


def std(xs: Sequence[float]) -> float:
    """Sample standard deviation (ddof=1); 0 for a single value."""
    if len(xs) < 2:
        return 0.0
    m = mean(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, eps = 1e-300, 1e-15
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        m2 = 2 * m
        even = m * (b - m) * x / ((qam + m2) * (a + m2))
        odd = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        for aa in (even, odd):  # the two half-steps of one Lentz iteration
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            delta = d * c
            h *= delta
        if abs(delta - 1.0) < eps:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with df degrees of freedom."""
    return betainc(df / 2.0, 0.5, df / (df + t * t))


def welch(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, float]:
    """Welch's t-test: (t, df, two-sided p). Needs >= 2 values per side and some spread."""
    na, nb = len(a), len(b)
    va, vb = std(a) ** 2 / na, std(b) ** 2 / nb
    se2 = va + vb
    t = (mean(b) - mean(a)) / math.sqrt(se2)
    df = se2**2 / (va**2 / (na - 1) + vb**2 / (nb - 1))
    try:
        from scipy import stats as sp

        p = float(sp.ttest_ind(b, a, equal_var=False).pvalue)
    except ImportError:
        p = t_two_sided_p(t, df)
    return t, df, p


@dataclass
class Comparison:
    """One metric, one arm against the reference arm."""

    ref: list[float]
    other: list[float]
    diff: float = math.nan  # mean(other) - mean(ref)
    effect: float = math.nan  # |diff| / s_pooled
    p: float = math.nan
    df: float = math.nan
    verdict: str = ""
    distinguishable: bool | None = None  # None: cannot judge

    @property
    def n_text(self) -> str:
        na, nb = len(self.ref), len(self.other)
        return f"{na} seeds" if na == nb else f"{nb} vs {na} seeds"


def compare(ref: Sequence[float], other: Sequence[float]) -> Comparison:
    """The verdict of the rule in this module's docstring."""
    c = Comparison(list(ref), list(other))
    if not ref or not other:
        c.verdict = "cannot judge: no values in one arm"
        return c
    c.diff = mean(other) - mean(ref)
    if len(ref) < 2 or len(other) < 2:
        c.verdict = (
            "cannot judge: one seed only in an arm, so no seed-to-seed spread to compare with"
        )
        return c
    pooled = math.sqrt((std(ref) ** 2 + std(other) ** 2) / 2)
    if pooled == 0:
        if c.diff == 0:
            c.verdict, c.distinguishable = "identical values in every seed", False
        else:
            c.verdict = "cannot judge: the seeds have no spread at all (identical values)"
        return c
    c.effect = abs(c.diff) / pooled
    _, c.df, c.p = welch(ref, other)
    if c.p < ALPHA:
        c.distinguishable = True
        c.verdict = f"larger than the seed-to-seed spread at {c.n_text}"
    else:
        c.distinguishable = False
        c.verdict = f"not distinguishable from seed noise at {c.n_text}"
        if c.effect >= HINT_EFFECT:
            c.verdict += " (effect size >= 2: more seeds could tell)"
    return c


def fmt_pm(values: Sequence[float], digits: int | None = None) -> str:
    """``mean ± std`` with decimals fitted to the spread (std to 2 significant digits)."""
    if not values:
        return "-"
    m, s = mean(values), std(values)
    if digits is None:
        digits = decimals(s if s > 0 else abs(m), 2 if s > 0 else 4)
    if len(values) < 2:
        return f"{m:.{digits}f}"
    return f"{m:.{digits}f} ± {s:.{digits}f}"


def decimals(x: float, significant: int = 2, lo: int = 0, hi: int = 6) -> int:
    """Decimals that show ``significant`` significant digits of x (clamped to [lo, hi])."""
    if not math.isfinite(x) or x == 0:
        return min(max(4, lo), hi)
    return min(max(significant - 1 - math.floor(math.log10(abs(x))), lo), hi)


def fmt(x: float, digits: int = 3) -> str:
    """A number with ``digits`` significant digits, no exponent for ordinary sizes."""
    if x is None or not math.isfinite(x):
        return "-"
    return f"{x:.{decimals(x, digits)}f}"


def fmt_p(p: float) -> str:
    """``p = 0.012``, ``p < 0.0001``."""
    if not math.isfinite(p):
        return "p = -"
    return "p < 0.0001" if p < 1e-4 else f"p = {p:.4f}" if p < 0.01 else f"p = {p:.3f}"
