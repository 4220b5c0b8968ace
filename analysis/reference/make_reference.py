#!/usr/bin/env python3
"""Reference values for shifter-analysis, computed independently with scipy.

Run from the repository root:  python3 analysis/reference/make_reference.py
It rewrites analysis/reference/values.json, which tests/reference.rs reads (no scipy at test time).
"""
import json
import math
import os

import numpy as np
from scipy import integrate, optimize, special, stats

GRID_STEPS_PER_DOUBLING = 4
FAILURE_ALTERNATIVES = [8, 11, 14]
LATENCY_ALTERNATIVES = [1, 2, 3, 4, 6, 8]
QUANTILE_ALTERNATIVES = [3, 4, 6]


def grid_ratio(k):
    return 2.0 ** (k / GRID_STEPS_PER_DOUBLING)


def log_lr(windows, r):
    """Sum over windows of ln P(e_c | E, pi(r)) - ln P(e_c | E, s): binomial likelihood ratios."""
    total = 0.0
    for n_c, e_c, n_b, e_b in windows:
        if n_c == 0 or n_b == 0 or e_c + e_b == 0:
            continue
        s = n_c / (n_c + n_b)
        pi = r * s / (r * s + 1 - s)
        total += stats.binom.logpmf(e_c, e_c + e_b, pi) - stats.binom.logpmf(e_c, e_c + e_b, s)
    return total


def harm_evidence(windows, alternatives):
    return float(np.mean([math.exp(log_lr(windows, grid_ratio(d))) for d in alternatives]))


def rate_log_evidence(x, n, p, a=0.5, b=0.5):
    return special.betaln(a + x, b + n - x) - special.betaln(a, b) - x * math.log(p) - (n - x) * math.log1p(-p)


def rate_upper_bound(x, n, alpha):
    target = math.log(1 / alpha)
    mle = x / n
    return optimize.brentq(lambda p: rate_log_evidence(x, n, p) - target, max(mle, 1e-300), 1 - 1e-15, xtol=1e-14)


def beta_mixture_bf_numeric(e_c, e_b, s, a, b):
    """The Beta(a, b) mixture over the canary's share of events, integrated numerically."""
    norm = e_c * math.log(s) + e_b * math.log(1 - s)

    def f(pi):
        return math.exp(e_c * math.log(pi) + e_b * math.log1p(-pi) - norm) * stats.beta.pdf(pi, a, b)

    value, _ = integrate.quad(f, 0, 1, limit=200, epsabs=0, epsrel=1e-11)
    return math.log(value)


def mann_whitney(canary, stable):
    """U and the tie-corrected normal approximation from scipy on the expanded samples: bucket k's
    requests all take the value k, so every bucket is a tie group."""
    x = np.repeat(np.arange(len(canary)), canary)
    y = np.repeat(np.arange(len(stable)), stable)
    res = stats.mannwhitneyu(x, y, alternative="greater", method="asymptotic", use_continuity=False)
    return {"u": float(res.statistic), "z": float(stats.norm.isf(res.pvalue))}


windows_harm = [(50, 3, 950, 1), (48, 2, 952, 2), (100, 4, 900, 3), (0, 0, 1000, 2), (200, 0, 800, 1)]
windows_shared = [(50, 15, 950, 285), (55, 17, 945, 280)]
windows_steps = [(50, 1, 950, 9), (100, 2, 900, 8), (200, 1, 800, 9), (500, 6, 500, 5)]

values = {
    "ln_beta": [[a, b, float(special.betaln(a, b))] for a, b in [(0.5, 0.5), (3.5, 200.5), (1, 1), (12, 3000), (0.5, 1e5)]],
    "log_lr": [
        {"windows": w, "k": k, "value": float(log_lr(w, grid_ratio(k)))}
        for w in (windows_harm, windows_shared, windows_steps)
        for k in (-8, -1, 1, 4, 8, 14, 24)
    ],
    "harm_evidence": [
        {"windows": w, "alternatives": alts, "value": harm_evidence(w, alts)}
        for w in (windows_harm, windows_shared, windows_steps)
        for alts in (FAILURE_ALTERNATIVES, LATENCY_ALTERNATIVES, QUANTILE_ALTERNATIVES)
    ],
    "beta_mixture": [
        {"e_c": e_c, "e_b": e_b, "s": s, "a": a, "b": b, "value": beta_mixture_bf_numeric(e_c, e_b, s, a, b)}
        for e_c, e_b, s, a, b in [(5, 9, 0.05, 1, 19), (0, 20, 0.1, 0.5, 0.5), (12, 3, 0.3, 2, 2)]
    ],
    "rate_upper_bound": [
        {"events": x, "trials": n, "alpha": a, "value": rate_upper_bound(x, n, a)}
        for x, n, a in [(0, 200, 0.005), (1, 1200, 0.0025), (10, 1000, 0.01), (3, 20000, 0.001)]
    ],
    "lognormal_cdf": [
        {"x": x, "median": m, "sigma": sg, "value": float(stats.lognorm.cdf(x, s=sg, scale=m))}
        for x, m, sg in [(300, 60, math.log(5) / stats.norm.ppf(0.99)), (100, 60, 0.7), (5, 60, 0.7), (2000, 240, 0.69)]
    ],
    "normal_quantile": [[q, float(stats.norm.ppf(q))] for q in (0.98, 0.99)],
    "mann_whitney": [
        {"canary": c, "stable": b, **mann_whitney(c, b)}
        for c, b in [
            ([0, 3, 10, 4, 1], [5, 40, 60, 20, 2]),
            ([1, 1, 1, 1, 1], [2, 2, 2, 2, 2]),
            ([0, 0, 2, 9, 30], [30, 9, 2, 0, 0]),
        ]
    ],
}

path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "values.json")
with open(path, "w") as f:
    f.write("{\n")
    items = list(values.items())
    for i, (key, rows) in enumerate(items):
        f.write(f' "{key}": [\n')
        f.write(",\n".join("  " + json.dumps(row) for row in rows))
        f.write("\n ]" + ("," if i + 1 < len(items) else "") + "\n")
    f.write("}\n")
print(f"wrote {path}")
