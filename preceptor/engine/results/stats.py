"""Statistics over judgments: win rates, Bradley–Terry league, agreement and bias.

Every figure is a dict ``{"value", "n", "ci", "method", "note"}``: ``value`` and ``ci`` are
``None`` with a note ("n too small (n=3 < 5)", "no variation", ...) whenever the figure
cannot honestly be given. Nothing here raises on small samples, all-tie data or a single
system, and nothing returns NaN.

Which votes count
  Only *effective* judgments (a superseded vote counts once: only the newest in a chain),
  ``skip`` never counts, and ``repeat`` judgments (the self-consistency sample) are used only
  for self-consistency and position consistency, never counted twice elsewhere. Bad items
  and imported human-label collections (``collections.kind = 'judgments'``) are left out
  unless the collection is named.

Agreement
  Cohen's kappa and raw agreement compare labels "1" / "2" (the alphabetically first /
  second system of the pair won), "tie" and "both_bad" ("with ties"), or only items both
  raters decided ("without ties"). Fixing the orientation by system name, not by the side
  shown, keeps an item's categories the same for every rater.

Intervals
  A share (win rate, agreement, bias) gets a 95 % Wilson interval when each prompt carries
  at most one vote, and a percentile bootstrap over prompts when votes cluster (several
  votes on one prompt are not independent). Bradley–Terry ratings and kappas get percentile
  bootstrap intervals over prompts.

Bradley–Terry
  P(i beats j) = 1 / (1 + exp(θj − θi)); ties, both-bad and inconsistent verdicts count
  half a win to each side. θ is ridge-penalised — the posterior mode under a weak Gaussian
  prior θ ~ N(0, 1/λ), λ = 0.01 — found by L-BFGS through scipy, which keeps ratings finite
  when one system wins every comparison; centred to mean 0; ``elo`` = 1000 + 400·θ/ln 10.
  Its 95 % interval is the wider of the percentile bootstrap over prompts and the prior's
  Laplace interval (θ ± 1.96 sd from the penalised likelihood's curvature): under complete
  separation every bootstrap replicate is the same, but the curvature is small, so the
  interval widens instead of collapsing to one value.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from itertools import combinations
from typing import TYPE_CHECKING, Any

import numpy as np

from preceptor.engine.intervals import Z95, boot_index_chunks, figure, share, wilson
from preceptor.engine.judging.queue import audit_of
from preceptor.engine.judging.settings import JudgeSettings
from preceptor.engine.judging.votes import HUMAN_KINDS, JUDGE_CHOICES, Vote, load_votes
from preceptor.errors import PreceptorError

if TYPE_CHECKING:
    from preceptor.project import Project

LABELS_WITH_TIES = ("a", "b", "tie", "both_bad")
BT_RIDGE = 0.01
ELO_SCALE = 400.0 / math.log(10.0)


@dataclass(frozen=True)
class StatsOptions:
    by: str | None = None
    judge: str = "all"
    split: str = "val,test"
    collection: str | None = None
    min_n: int = 5
    n_boot: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.by not in (None, "task"):
            raise PreceptorError("Invalid option", f"--by {self.by!r} is not supported", "Use --by task, or leave it out.")
        if self.judge not in JUDGE_CHOICES:
            raise PreceptorError("Invalid option", f"--judge {self.judge!r} is not one of {', '.join(JUDGE_CHOICES)}",
                                 "Use --judge expert, llm, metric or all.")
        if self.min_n < 1:
            raise PreceptorError("Invalid option", f"--min-n {self.min_n} must be at least 1", "Use e.g. 5.")
        if self.n_boot < 0:
            raise PreceptorError("Invalid option", f"--n-boot {self.n_boot} must not be negative", "Use e.g. 1000.")


# ----------------------------------------------------------------------------------------------
# figures
# ----------------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------------
# agreement
# ----------------------------------------------------------------------------------------------

def cohen_kappa(a: Sequence[Any], b: Sequence[Any]) -> float | None:
    """Cohen's kappa of two raters' labels, by scikit-learn's ``cohen_kappa_score`` (None when
    undefined: no items or no variation, where scikit-learn answers NaN)."""
    if len(a) != len(b):
        raise ValueError("raters must label the same items")
    if not a:
        return None
    import warnings

    from sklearn.metrics import cohen_kappa_score

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        k = float(cohen_kappa_score([str(x) for x in a], [str(x) for x in b]))
    return k if math.isfinite(k) else None


def _kappa_fast(a: Sequence[Any], b: Sequence[Any]) -> float | None:
    """The same kappa from the confusion matrix, for the bootstrap's replicates (thousands per
    figure, where scikit-learn's per-call overhead dominates); equal to :func:`cohen_kappa`
    to 1e-12 (tested against scikit-learn)."""
    n = len(a)
    if n == 0:
        return None
    cats = sorted(set(a) | set(b), key=str)
    idx = {c: i for i, c in enumerate(cats)}
    m = np.zeros((len(cats), len(cats)))
    for x, y in zip(a, b, strict=True):
        m[idx[x], idx[y]] += 1
    po = np.trace(m) / n
    pe = float((m.sum(axis=1) / n) @ (m.sum(axis=0) / n))
    if 1.0 - pe <= 1e-12:
        return None
    return float((po - pe) / (1.0 - pe))


def agreement(a: Sequence[Any], b: Sequence[Any], clusters: Sequence[Any] | None = None, *, n_boot: int = 1000,
              seed: int = 0, min_n: int = 5) -> dict[str, Any]:
    """Raw agreement and Cohen's kappa of two raters over the same items, with bootstrap CIs."""
    n = len(a)
    same = [1.0 if x == y else 0.0 for x, y in zip(a, b, strict=True)]
    clusters = list(clusters) if clusters is not None else list(range(n))
    groups: dict[Any, list[int]] = defaultdict(list)
    for i, c in enumerate(clusters):
        groups[c].append(i)
    per = list(groups.values())
    raw = share([sum(same[i] for i in g) for g in per], [len(g) for g in per], n_boot=n_boot, seed=seed, min_n=min_n)
    k = cohen_kappa(a, b)
    ci = None
    if k is not None and n >= min_n and n_boot > 0 and len(per) > 1:
        rng = np.random.default_rng(seed)
        vals = []
        for _ in range(n_boot):
            pick = rng.integers(0, len(per), size=len(per))
            items = [i for j in pick for i in per[j]]
            kb = _kappa_fast([a[i] for i in items], [b[i] for i in items])
            if kb is not None:
                vals.append(kb)
        if vals:
            ci = (float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5)))
    kappa = figure(k, n, ci, method="bootstrap over prompts", min_n=min_n,
                   note=None if k is not None else "no variation (kappa undefined)")
    return {"n": n, "raw": raw, "kappa": kappa}


# ----------------------------------------------------------------------------------------------
# Bradley–Terry
# ----------------------------------------------------------------------------------------------

def bt_fit(wins: np.ndarray, ridge: float = BT_RIDGE, x0: np.ndarray | None = None) -> np.ndarray:
    """Bradley–Terry strengths θ (mean 0) from ``wins[i, j]`` = (fractional) wins of i over j."""
    from scipy.optimize import minimize

    wins = np.asarray(wins, float)
    s = wins.shape[0]
    if s < 2:
        return np.zeros(s)
    games = wins + wins.T

    def nll(theta: np.ndarray) -> tuple[float, np.ndarray]:
        d = theta[:, None] - theta[None, :]
        # log P(i beats j) = -log(1 + exp(-(θi - θj)))
        logp = -np.logaddexp(0.0, -d)
        f = -float((wins * logp).sum()) + 0.5 * ridge * float(theta @ theta)
        p = 1.0 / (1.0 + np.exp(-d))  # P(i beats j)
        g = -(wins.sum(axis=1) - (games * p).sum(axis=1)) + ridge * theta
        return f, g

    res = minimize(nll, np.zeros(s) if x0 is None else x0, jac=True, method="L-BFGS-B")
    theta = np.asarray(res.x, float)
    return theta - theta.mean()


def bt_league(names: Sequence[str], per_prompt: np.ndarray, *, n_boot: int, seed: int, min_n: int) -> dict[str, Any]:
    """League table from per-prompt win tensors ``per_prompt[p, i, j]`` with bootstrap CIs over prompts."""
    s = len(names)
    total = per_prompt.sum(axis=0) if per_prompt.size else np.zeros((s, s))
    games = total + total.T
    n_comparisons = int(round(games.sum() / 2))
    out: dict[str, Any] = {"systems": list(names), "n": n_comparisons, "prompts": int(per_prompt.shape[0]),
                           "rows": [], "note": None}
    if s < 2:
        out["note"] = "needs at least two systems compared"
        return out
    if n_comparisons < min_n:
        out["note"] = f"n too small (n={n_comparisons} < {min_n})"
    connected = _connected(games > 0)
    if not connected:
        out["note"] = (out["note"] + "; " if out["note"] else "") + "comparison graph not connected: ratings of separate groups are not comparable"
    theta = bt_fit(total)
    boots: list[np.ndarray] = []
    m = per_prompt.shape[0]
    if n_boot > 0 and m > 1 and n_comparisons >= min_n:
        rng = np.random.default_rng(seed)
        flat = per_prompt.reshape(m, s * s)
        for idx in boot_index_chunks(m, n_boot, rng):
            for row in idx:
                w = np.bincount(row, minlength=m).astype(float) @ flat
                boots.append(bt_fit(w.reshape(s, s), x0=theta))
    boot = np.array(boots) if boots else None
    lap_sd = bt_laplace_sd(theta, games)
    wins = total.sum(axis=1)
    order = np.argsort(-theta, kind="stable")
    for rank, i in enumerate(order, 1):
        ci = None
        if n_comparisons >= min_n and connected:
            lap = (float(theta[i] - Z95 * lap_sd[i]), float(theta[i] + Z95 * lap_sd[i]))
            ci = lap
            if boot is not None:
                bl, bh = float(np.percentile(boot[:, i], 2.5)), float(np.percentile(boot[:, i], 97.5))
                ci = (min(bl, lap[0]), max(bh, lap[1]))
        played = int(round(games[i].sum()))
        row = {
            "rank": rank, "system": names[i], "comparisons": played, "wins": float(wins[i]),
            "strength": figure(float(theta[i]), played, ci, method=BT_METHOD, min_n=min_n),
            "elo": figure(1000.0 + ELO_SCALE * float(theta[i]), played,
                          (1000.0 + ELO_SCALE * ci[0], 1000.0 + ELO_SCALE * ci[1]) if ci else None,
                          method=BT_METHOD, min_n=min_n),
        }
        out["rows"].append(row)
    return out


BT_METHOD = "ridge-penalised BT (Gaussian prior λ=0.01): bootstrap over prompts ∪ Laplace interval"


def bt_laplace_sd(theta: np.ndarray, games: np.ndarray, ridge: float = BT_RIDGE) -> np.ndarray:
    """Standard deviations of the (mean-centred) ratings from the penalised likelihood's
    curvature at θ: H = λI + Σ games·p(1−p) as a graph Laplacian; cov = P H⁻¹ P, P centring."""
    s = len(theta)
    d = theta[:, None] - theta[None, :]
    p = 1.0 / (1.0 + np.exp(-d))
    w = games * p * (1.0 - p)
    h = np.diag(w.sum(axis=1)) - w + ridge * np.eye(s)
    cov = np.linalg.inv(h)
    centre = np.eye(s) - np.full((s, s), 1.0 / s)
    cov = centre @ cov @ centre
    return np.sqrt(np.clip(np.diag(cov), 1e-12, None))


def _logit_fit(x: np.ndarray, y: np.ndarray, w: np.ndarray, ridge: float) -> tuple[np.ndarray, np.ndarray]:
    """Weighted logistic regression with a Gaussian prior (ridge) on every coefficient:
    (coefficients, covariance from the penalised likelihood's curvature)."""
    from scipy.optimize import minimize

    k = x.shape[1]

    def nll(beta: np.ndarray) -> tuple[float, np.ndarray]:
        z = x @ beta
        f = float((w * (np.logaddexp(0.0, z) - y * z)).sum()) + 0.5 * ridge * float(beta @ beta)
        p = 1.0 / (1.0 + np.exp(-z))
        return f, x.T @ (w * (p - y)) + ridge * beta

    beta = np.asarray(minimize(nll, np.zeros(k), jac=True, method="L-BFGS-B").x, float)
    p = 1.0 / (1.0 + np.exp(-(x @ beta)))
    h = (x * (w * p * (1 - p))[:, None]).T @ x + ridge * np.eye(k)
    return beta, np.linalg.inv(h)


def _length_feature(v: Vote) -> float:
    """Answer-length difference of a pair (a minus b) over their sum, in [-1, 1]."""
    tot = v.len_a + v.len_b
    return (v.len_a - v.len_b) / tot if tot else 0.0


def _outcomes(v: Vote) -> float | None:
    """1 for a, 0 for b, 0.5 for tie / both-bad / inconsistent; None for unparsed."""
    return {"a": 1.0, "b": 0.0, "tie": 0.5, "both_bad": 0.5, "inconsistent": 0.5}.get(v.label)


def style_controlled(votes: Sequence[Vote], *, min_n: int = 5) -> dict[str, Any]:
    """Arena-style style control: per judge kind, Bradley–Terry with the answers' length
    difference as a covariate (a logistic regression with a weak Gaussian prior, λ = 0.01),
    so a judge that prefers longer answers does not lift long-winded systems; ratings on the
    Elo scale with 95 % Laplace intervals, and the fitted length coefficient with its CI.
    Beside it, AlpacaEval-style length-controlled win rates per system pair: the win rate the
    same regression predicts at equal length, with a delta-method 95 % interval."""
    votes, _ = league_votes(votes)
    by_kind: dict[str, list[Vote]] = defaultdict(list)
    for v in votes:
        if not v.repeat and _outcomes(v) is not None:
            by_kind[v.kind].append(v)
    out: dict[str, Any] = {}
    for kind, vs in sorted(by_kind.items()):
        names = sorted({v.system_a for v in vs} | {v.system_b for v in vs})
        if len(names) < 2:
            continue
        ix = {n: i for i, n in enumerate(names)}
        s = len(names)
        # columns: systems 1..s-1 (system 0 is the reference, rating 0) and the length feature
        x = np.zeros((len(vs), s))
        y = np.array([_outcomes(v) for v in vs], float)
        for r, v in enumerate(vs):
            ia, ib = ix[v.system_a], ix[v.system_b]
            if ia:
                x[r, ia - 1] += 1.0
            if ib:
                x[r, ib - 1] -= 1.0
            x[r, s - 1] = _length_feature(v)
        beta, cov = _logit_fit(x, y, np.ones(len(vs)), BT_RIDGE)
        theta = np.concatenate([[0.0], beta[: s - 1]])
        tcov = np.zeros((s, s))
        tcov[1:, 1:] = cov[: s - 1, : s - 1]
        centre = np.eye(s) - np.full((s, s), 1.0 / s)
        theta_c = centre @ theta
        sd = np.sqrt(np.clip(np.diag(centre @ tcov @ centre), 1e-12, None))
        played = {n: sum(1 for v in vs if n in (v.system_a, v.system_b)) for n in names}
        rows = []
        for rank, i in enumerate(np.argsort(-theta_c, kind="stable"), 1):
            e = 1000.0 + ELO_SCALE * float(theta_c[i])
            half = ELO_SCALE * Z95 * float(sd[i])
            rows.append({"rank": rank, "system": names[i], "comparisons": played[names[i]],
                         "elo": figure(e, played[names[i]], (e - half, e + half), min_n=min_n,
                                       method="style-controlled BT (length covariate), Laplace interval")})
        lb, lsd = float(beta[s - 1]), float(np.sqrt(cov[s - 1, s - 1]))
        pairs = []
        for a, b in combinations(range(s), 2):
            d = theta[a] - theta[b]
            g = np.zeros(s)  # gradient of θa − θb w.r.t. the fitted system columns
            if a:
                g[a - 1] += 1.0
            if b:
                g[b - 1] -= 1.0
            sd_d = float(np.sqrt(max(g @ cov @ g, 1e-12)))
            n_ab = sum(1 for v in vs if {v.system_a, v.system_b} == {names[a], names[b]})
            if not n_ab:
                continue
            sig = lambda t: 1.0 / (1.0 + math.exp(-t))  # noqa: E731
            pairs.append({"system_1": names[a], "system_2": names[b], "votes": n_ab,
                          "lc_win_rate_1": figure(sig(d), n_ab, (sig(d - Z95 * sd_d), sig(d + Z95 * sd_d)), min_n=min_n,
                                                  method="length-controlled (logistic, equal length), delta method")})
        out[kind] = {"rows": rows, "length_coefficient": figure(lb, len(vs), (lb - Z95 * lsd, lb + Z95 * lsd),
                                                                 min_n=min_n, method="logit per unit of length share"),
                     "lc_win_rates": pairs, "n": len(vs)}
    return out


def _connected(adj: np.ndarray) -> bool:
    s = adj.shape[0]
    seen, stack = {0}, [0]
    while stack:
        i = stack.pop()
        for j in np.nonzero(adj[i])[0]:
            if int(j) not in seen:
                seen.add(int(j))
                stack.append(int(j))
    return len(seen) == s


# ----------------------------------------------------------------------------------------------
# votes
# ----------------------------------------------------------------------------------------------


def _latest_per_rater(votes: Iterable[Vote]) -> dict[tuple[str, int], Vote]:
    """One vote per (rater, pair): the newest (votes arrive oldest first)."""
    out: dict[tuple[str, int], Vote] = {}
    for v in votes:
        out[(v.rater, v.pair_id)] = v
    return out


# ----------------------------------------------------------------------------------------------
# the statistics
# ----------------------------------------------------------------------------------------------

def win_rates(votes: Sequence[Vote], *, by_task: bool = False, n_boot: int = 1000, seed: int = 0,
              min_n: int = 5) -> list[dict[str, Any]]:
    """Per judge kind (and task) and system pair: wins, ties, both-bad, inconsistent (the LLM
    judge's verdict changed with the order: no preference) and unparsed counts, and the win
    rate of the first system over decisive votes with a 95 % CI."""
    groups: dict[tuple[str, str | None, str, str], list[Vote]] = defaultdict(list)
    votes, _ = league_votes(votes)
    for v in votes:
        if v.repeat:
            continue
        s1, s2 = sorted((v.system_a, v.system_b))
        groups[(v.kind, v.task if by_task else None, s1, s2)].append(v)
    rows = []
    for (kind, task, s1, s2), vs in sorted(groups.items(), key=lambda kv: tuple(str(x) for x in kv[0])):
        per_prompt: dict[int, list[float]] = defaultdict(lambda: [0.0, 0.0])
        w1 = w2 = ties = bad = incons = unparsed = 0
        for v in vs:
            win = v.winner_system()
            if win is None:
                ties += v.label == "tie"
                bad += v.label == "both_bad"
                incons += v.label == "inconsistent"
                unparsed += v.label == "unparsed"
                continue
            first = win == s1
            w1 += first
            w2 += not first
            per_prompt[v.prompt_id][0] += first
            per_prompt[v.prompt_id][1] += 1
        succ = [c[0] for c in per_prompt.values()]
        tri = [c[1] for c in per_prompt.values()]
        row = {"judge": kind, "system_1": s1, "system_2": s2, "wins_1": w1, "wins_2": w2, "ties": ties,
               "both_bad": bad, "inconsistent": incons, "unparsed": unparsed, "votes": len(vs), "prompts": len({v.prompt_id for v in vs}),
               "win_rate_1": share(succ, tri, n_boot=n_boot, seed=seed, min_n=min_n),
               "tie_share": figure(ties / len(vs) if vs else None, len(vs), wilson(ties, len(vs)), method="wilson",
                                   min_n=min_n)}
        if by_task:
            row["task"] = task
        rows.append(row)
    return rows


_VARIANT = re.compile(r"#\d+$")
POSITION_LABELS = ("output_1", "output_2")  # LLMBar's "systems" are the two positions, never systems


def is_position(name: str) -> bool:
    """An imported "system" that is only a position (``output_1``, or its variant ``output_1#3``)."""
    return _VARIANT.sub("", name).rsplit(":", 1)[-1] in POSITION_LABELS


def league_votes(votes: Iterable[Vote]) -> tuple[list[Vote], dict[str, Any]]:
    """The votes a league or win rate may use: an imported set's upstream variants of one
    system (``pythia-6.9b#2``: the same system's answer truncated or re-run) merge into that
    system, and votes whose "systems" are only positions (LLMBar) are left out. Returns the
    votes and a note of what was merged or left out."""
    out: list[Vote] = []
    merged: dict[str, set[str]] = defaultdict(set)
    positions = 0
    for v in votes:
        if v.kind == "imported":
            if is_position(v.system_a) or is_position(v.system_b):
                positions += 1
                continue
            a, b = _VARIANT.sub("", v.system_a), _VARIANT.sub("", v.system_b)
            if a != v.system_a:
                merged[a].add(v.system_a)
            if b != v.system_b:
                merged[b].add(v.system_b)
            if a == b:  # two variants of one system: no comparison between systems
                continue
            if (a, b) != (v.system_a, v.system_b):
                v = replace(v, system_a=a, system_b=b)
        out.append(v)
    info: dict[str, Any] = {"merged_variants": {k: len(x) for k, x in sorted(merged.items())},
                            "position_only_votes": positions}
    return out, info


def _league_note(info: dict[str, Any]) -> str | None:
    bits = []
    if info["merged_variants"]:
        n = sum(info["merged_variants"].values())
        bits.append(f"{n} upstream variants merged into {len(info['merged_variants'])} systems")
    if info["position_only_votes"]:
        bits.append(f"{info['position_only_votes']} votes between positions (no systems) left out")
    return "; ".join(bits) or None


def bradley_terry(votes: Sequence[Vote], *, n_boot: int = 1000, seed: int = 0, min_n: int = 5) -> dict[str, Any]:
    """A league per judge kind over every system judged (tie, both-bad and inconsistent
    verdicts = half a win each; unparsed ones are left out); ``min_n`` applies per system
    (a system with fewer comparisons shows "n too small")."""
    by_kind: dict[str, list[Vote]] = defaultdict(list)
    votes, info = league_votes(votes)
    for v in votes:
        if v.repeat or v.label not in (*LABELS_WITH_TIES, "inconsistent"):
            continue
        by_kind[v.kind].append(v)
    leagues = {}
    for kind, vs in sorted(by_kind.items()):
        names = sorted({v.system_a for v in vs} | {v.system_b for v in vs})
        ix = {n: i for i, n in enumerate(names)}
        prompts = sorted({v.prompt_id for v in vs})
        px = {p: i for i, p in enumerate(prompts)}
        t = np.zeros((len(prompts), len(names), len(names)))
        for v in vs:
            i, j, p = ix[v.system_a], ix[v.system_b], px[v.prompt_id]
            if v.label == "a":
                t[p, i, j] += 1
            elif v.label == "b":
                t[p, j, i] += 1
            else:
                t[p, i, j] += 0.5
                t[p, j, i] += 0.5
        league = bt_league(names, t, n_boot=n_boot, seed=seed, min_n=min_n)
        if kind == "imported" and _league_note(info):
            league["variants"] = info
            league["note"] = "; ".join(x for x in (league.get("note"), _league_note(info)) if x)
        leagues[kind] = league
    return leagues


def _labels(v: Vote, ties: bool) -> str | None:
    """The label kappa compares: decisive votes are oriented by system name (the alphabetically
    first system of the pair is "1"), one fixed orientation per item whatever side was shown."""
    if v.label in ("a", "b"):
        first_is_a = v.system_a <= v.system_b
        return "1" if (v.label == "a") == first_is_a else "2"
    if ties and v.label in ("tie", "both_bad"):
        return v.label
    return None


def rater_agreement(votes: Sequence[Vote], *, n_boot: int = 1000, seed: int = 0, min_n: int = 5) -> list[dict[str, Any]]:
    """Kappa and raw agreement (with and without ties) for each pair of raters with overlap.

    Covers expert–expert, expert–LLM, imported human labels vs any judge, and metric judges
    vs humans; LLM–LLM and metric–metric pairs are left out.
    """
    latest = _latest_per_rater(v for v in votes if not v.repeat)
    by_rater: dict[str, dict[int, Vote]] = defaultdict(dict)
    for (rater, pair), v in latest.items():
        by_rater[rater][pair] = v
    rows = []
    for r1, r2 in combinations(sorted(by_rater), 2):
        k1, k2 = r1.split(":", 1)[0], r2.split(":", 1)[0]
        if k1 == k2 and k1 in ("llm", "metric"):
            continue
        if k1 not in HUMAN_KINDS and k2 not in HUMAN_KINDS:
            continue
        common = sorted(set(by_rater[r1]) & set(by_rater[r2]))
        if not common:
            continue
        row: dict[str, Any] = {"rater_1": r1, "rater_2": r2, "comparison": "-".join(sorted({k1, k2}) if k1 != k2 else [k1, k2]),
                               "overlap": len(common)}
        for name, ties in (("with_ties", True), ("without_ties", False)):
            a, b, cl = [], [], []
            for p in common:
                x, y = _labels(by_rater[r1][p], ties), _labels(by_rater[r2][p], ties)
                if x is None or y is None:
                    continue
                a.append(x)
                b.append(y)
                cl.append(by_rater[r1][p].prompt_id)
            row[name] = agreement(a, b, cl, n_boot=n_boot, seed=seed, min_n=min_n)
        rows.append(row)
    return rows


def self_consistency(votes: Sequence[Vote], *, n_boot: int = 1000, seed: int = 0, min_n: int = 5) -> list[dict[str, Any]]:
    """Each human judge's repeat votes against their own first vote on the same pair."""
    first = _latest_per_rater(v for v in votes if not v.repeat)
    per: dict[str, tuple[list[str], list[str], list[int]]] = defaultdict(lambda: ([], [], []))
    for v in votes:
        if not v.repeat or v.kind not in HUMAN_KINDS:
            continue
        orig = first.get((v.rater, v.pair_id))
        if orig is None:
            continue
        x, y = _labels(orig, True), _labels(v, True)
        if x is None or y is None:
            continue
        a, b, cl = per[v.rater]
        a.append(x)
        b.append(y)
        cl.append(v.prompt_id)
    return [{"rater": r, **agreement(a, b, cl, n_boot=n_boot, seed=seed, min_n=min_n)} for r, (a, b, cl) in sorted(per.items())]


def position_bias(votes: Sequence[Vote], *, n_boot: int = 1000, seed: int = 0, min_n: int = 5) -> list[dict[str, Any]]:
    """Per judge: first-position preference and position consistency.

    First-position preference is the share of decisive verdicts won by the answer shown on
    the left (for the LLM judge, each order it was asked counts, from ``meta.orders``).
    Position consistency is the share of pairs judged in both orders whose verdict survives
    the swap: the LLM judge's two orders of one judgment (a stored ``inconsistent`` verdict
    counts as not surviving), or a judge's votes on one pair shown both ways (the repeat
    sample shows the pair swapped).
    """
    rows = []
    by_rater: dict[str, list[Vote]] = defaultdict(list)
    for v in votes:
        by_rater[v.rater].append(v)
    for rater, vs in sorted(by_rater.items()):
        kind = vs[0].kind
        per_prompt: dict[int, list[float]] = defaultdict(lambda: [0.0, 0.0])
        for v in vs:
            orders = v.orders if v.orders else (((v.left, v.label),) if v.left is not None else ())
            for left, label in orders:
                if label in ("a", "b"):
                    per_prompt[v.prompt_id][0] += label == left
                    per_prompt[v.prompt_id][1] += 1
        first = share([c[0] for c in per_prompt.values()], [c[1] for c in per_prompt.values()],
                      n_boot=n_boot, seed=seed, min_n=min_n)
        cons: dict[int, list[float]] = defaultdict(lambda: [0.0, 0.0])
        by_pair: dict[int, list[Vote]] = defaultdict(list)
        for v in vs:
            if len(v.orders) >= 2 or v.label == "inconsistent":
                ok = v.label != "inconsistent" and len({lab for _, lab in v.orders}) == 1
                cons[v.prompt_id][0] += ok
                cons[v.prompt_id][1] += 1
            elif v.left is not None and v.label in LABELS_WITH_TIES:
                by_pair[v.pair_id].append(v)
        for pv in by_pair.values():
            la = {v.label for v in pv if v.left == "a"}
            lb = {v.label for v in pv if v.left == "b"}
            if la and lb:
                cons[pv[0].prompt_id][0] += la == lb and len(la) == 1
                cons[pv[0].prompt_id][1] += 1
        consistency = share([c[0] for c in cons.values()], [c[1] for c in cons.values()], n_boot=n_boot, seed=seed,
                            min_n=min_n)
        if consistency["n"] == 0:
            consistency["note"] = "no pair judged in both orders"
        rows.append({"rater": rater, "kind": kind, "first_position_preference": first,
                     "position_consistency": consistency})
    return rows


def length_bias(votes: Sequence[Vote], *, n_boot: int = 1000, seed: int = 0, min_n: int = 5) -> list[dict[str, Any]]:
    """Per judge kind: how often the longer answer (characters) wins a decisive vote."""
    rows = []
    by_kind: dict[str, list[Vote]] = defaultdict(list)
    for v in votes:
        if not v.repeat and v.decisive and v.len_a != v.len_b:
            by_kind[v.kind].append(v)
    for kind, vs in sorted(by_kind.items()):
        per: dict[int, list[float]] = defaultdict(lambda: [0.0, 0.0])
        for v in vs:
            longer = "a" if v.len_a > v.len_b else "b"
            per[v.prompt_id][0] += v.label == longer
            per[v.prompt_id][1] += 1
        rows.append({"judge": kind, "longer_wins": share([c[0] for c in per.values()], [c[1] for c in per.values()],
                                                         n_boot=n_boot, seed=seed, min_n=min_n)})
    return rows


def human_majority(votes: Iterable[Vote]) -> dict[int, tuple[str, int]]:
    """{pair_id: ("a"|"b", prompt_id)} where human decisive votes have a strict majority."""
    count: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0])
    for v in _latest_per_rater(v for v in votes if not v.repeat and v.kind in HUMAN_KINDS).values():
        if v.decisive:
            c = count[v.pair_id]
            c[0 if v.label == "a" else 1] += 1
            c[2] = v.prompt_id
    return {p: ("a" if c[0] > c[1] else "b", c[2]) for p, c in count.items() if c[0] != c[1]}


def _first_left(votes: Iterable[Vote]) -> dict[int, str]:
    """The side shown first (left) per pair: to the first human who voted; ``a`` for imported
    labels, which keep the file's order."""
    first: dict[int, str] = {}
    for v in votes:
        if v.kind in HUMAN_KINDS and not v.repeat and v.pair_id not in first:
            first[v.pair_id] = v.left or "a"
    return first


def _floor_counts(votes: Sequence[Vote], pairs: Iterable[int], majority: dict[int, tuple[str, int]]
                  ) -> tuple[dict[int, list[float]], dict[int, list[float]]]:
    """Per prompt [hits, trials] of "the longer answer wins" and "the first shown wins" against
    the human majority on ``pairs`` (equal lengths count half)."""
    lens = {v.pair_id: (v.len_a, v.len_b) for v in votes}
    first = _first_left(votes)
    longer: dict[int, list[float]] = defaultdict(lambda: [0.0, 0.0])
    shown: dict[int, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for pair in pairs:
        if pair not in majority:
            continue
        label, prompt = majority[pair]
        la, lb = lens.get(pair, (0, 0))
        longer[prompt][0] += (("a" if la > lb else "b") == label) if la != lb else 0.5
        longer[prompt][1] += 1
        shown[prompt][0] += first.get(pair, "a") == label
        shown[prompt][1] += 1
    return longer, shown


def _share_of(per: dict[int, list[float]], **kw: Any) -> dict[str, Any]:
    return share([c[0] for c in per.values()], [c[1] for c in per.values()], **kw)


def beats_floors(fig: dict[str, Any], *floors: dict[str, Any]) -> bool | None:
    """Does a judge's agreement beat every floor with its CI (lower bound above each floor's
    value and above chance)? None when a figure is missing."""
    if not fig or fig.get("ci") is None:
        return None
    vals = [f.get("value") for f in floors]
    if any(v is None for v in vals):
        return None
    return bool(fig["ci"][0] > max([0.5, *vals]))


def human_floors(votes: Sequence[Vote], *, n_boot: int = 1000, seed: int = 0, min_n: int = 5) -> dict[str, Any]:
    """What a judge must beat, against the human labels alone (before any judge ran): on the
    pairs with a strict human majority, how often "the longer answer wins" and "the first
    shown wins" give the humans' winner, and chance (50 %)."""
    majority = human_majority(votes)
    longer, shown = _floor_counts(votes, majority, majority)
    kw = dict(n_boot=n_boot, seed=seed, min_n=min_n)
    return {"n": len(majority), "longer_answer_wins": _share_of(longer, **kw),
            "first_shown_wins": _share_of(shown, **kw), "chance": 0.5,
            "note": None if majority else "no pair has a human majority"}


def metric_vs_expert(votes: Sequence[Vote], pair_outputs: dict[int, tuple[int, int]],
                     values: dict[tuple[str, str], dict[int, float]], *, n_boot: int = 1000, seed: int = 0,
                     min_n: int = 5) -> list[dict[str, Any]]:
    """Per metric: how often the answer with the higher metric value is the experts' winner."""
    majority = human_majority(votes)
    rows = []
    for (name, ref), vals in sorted(values.items()):
        per: dict[int, list[float]] = defaultdict(lambda: [0.0, 0.0])
        ties = 0
        for pair, (label, prompt) in majority.items():
            oa, ob = pair_outputs.get(pair, (None, None))
            va, vb = vals.get(oa), vals.get(ob)  # type: ignore[arg-type]
            if va is None or vb is None:
                continue
            if va == vb:
                ties += 1
                continue
            per[prompt][0] += ("a" if va > vb else "b") == label
            per[prompt][1] += 1
        fig = share([c[0] for c in per.values()], [c[1] for c in per.values()], n_boot=n_boot, seed=seed, min_n=min_n)
        used = [pair for pair in majority if pair_outputs.get(pair) and all(
            vals.get(o) is not None for o in pair_outputs[pair]) and len({vals[o] for o in pair_outputs[pair]}) == 2]
        longer, shown = _floor_counts(votes, used, majority)
        kw = dict(n_boot=n_boot, seed=seed, min_n=min_n)
        fl, fs = _share_of(longer, **kw), _share_of(shown, **kw)
        rows.append({"metric": name, "reference": ref, "agrees_with_experts": fig, "metric_ties": ties,
                     "floor_longer_wins": fl, "floor_first_shown_wins": fs, "floor_chance": 0.5,
                     "beats_floors": beats_floors(fig, fl, fs)})
    return rows


def llm_audit(votes: Sequence[Vote], audited: Callable[[int], bool] | None = None, *, n_boot: int = 1000, seed: int = 0,
              min_n: int = 5) -> list[dict[str, Any]]:
    """Per LLM judge: how often its verdict is the humans' majority winner, beside its floors.

    Over the pairs with a strict human majority and an LLM verdict (a tie, inconsistent or
    unparsed LLM verdict counts as a miss); ``audited`` keeps the audit draw of
    ``[judge] llm_first`` (the unbiased check of the pairs left to the judge). Floors on the
    same pairs: the longer answer wins, the first-shown answer wins (the side shown left to
    the first human who voted; ``output_a`` for imported labels, which keep the file's
    order), and chance (50 %).
    """
    majority = human_majority(votes)
    first_left: dict[int, str] = {}
    for v in votes:
        if v.kind in HUMAN_KINDS and not v.repeat and v.pair_id not in first_left:
            first_left[v.pair_id] = v.left or "a"
    llm: dict[tuple[str, int], Vote] = {}
    for v in votes:
        if v.kind == "llm" and not v.repeat:
            llm[(v.judge, v.pair_id)] = v
    rows = []
    for judge in sorted({j for j, _ in llm}):
        hits: dict[int, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0.0])
        for (j, pair), v in llm.items():
            if j != judge or pair not in majority or (audited is not None and not audited(pair)):
                continue
            label, prompt = majority[pair]
            c = hits[prompt]
            c[0] += v.label == label
            c[1] += (("a" if v.len_a > v.len_b else "b") == label) if v.len_a != v.len_b else 0.5
            c[2] += first_left.get(pair, "a") == label
            c[3] += 1
        vals = list(hits.values())
        kw = dict(n_boot=n_boot, seed=seed, min_n=min_n)
        rows.append({"judge": judge, "scope": "audited pairs" if audited is not None else "all pairs with both verdicts",
                     "n": int(sum(c[3] for c in vals)),
                     "agrees_with_humans": share([c[0] for c in vals], [c[3] for c in vals], **kw),
                     "floor_longer_wins": share([c[1] for c in vals], [c[3] for c in vals], **kw),
                     "floor_first_shown_wins": share([c[2] for c in vals], [c[3] for c in vals], **kw),
                     "floor_chance": 0.5})
        row = rows[-1]
        row["beats_floors"] = beats_floors(row["agrees_with_humans"], row["floor_longer_wins"],
                                           row["floor_first_shown_wins"])
    return rows


def stopping_signal(votes: Sequence[Vote]) -> dict[str, Any]:
    """Is the human league settled (every adjacent pair of systems separated at 95 %), and if
    not, about how many more votes the queue estimates it needs (``judging.queue.stopping``)."""
    from preceptor.engine.judging.queue import fit_league, stopping

    votes, _ = league_votes(votes)  # merged variants, no positions: the league the question is about
    names = sorted({s for v in votes if v.kind in HUMAN_KINDS for s in (v.system_a, v.system_b)})
    ix = {n: i for i, n in enumerate(names)}
    counts: dict[tuple[int, int], float] = defaultdict(float)
    for v in votes:
        if v.kind not in HUMAN_KINDS or v.repeat or v.label not in LABELS_WITH_TIES:
            continue
        a, b = ix[v.system_a], ix[v.system_b]
        if v.label == "a":
            counts[(a, b)] += 1.0
        elif v.label == "b":
            counts[(b, a)] += 1.0
        else:
            counts[(a, b)] += 0.5
            counts[(b, a)] += 0.5
    out = stopping(fit_league(counts, range(len(names))), dict(enumerate(names)))
    out["judges"] = "human (expert and imported) votes"
    return out


def compute(project: Project, opts: StatsOptions = StatsOptions()) -> dict[str, Any]:
    """All judging statistics for the selection in ``opts`` (JSON-able)."""
    from preceptor.db import exports as q

    votes = load_votes(project, split=opts.split, collection=opts.collection, judge=opts.judge)
    fallback: list[str] = []
    if not votes and opts.collection is None:
        # nothing in the default selection: the project's imported human-label sets, said so
        for name in q.collection_names(project.store, kind="judgments"):
            got = load_votes(project, split=opts.split, collection=name, judge=opts.judge)
            if got:
                fallback.append(name)
                votes += got
    kw = dict(n_boot=opts.n_boot, seed=opts.seed, min_n=opts.min_n)
    pair_outputs: dict[int, tuple[int, int]] = {}
    if any(v.kind in HUMAN_KINDS for v in votes):
        pair_outputs = q.pair_outputs(project.store, sorted({v.pair_id for v in votes if v.kind in HUMAN_KINDS}))
    values = q.metric_values(project.store, sorted({o for ab in pair_outputs.values() for o in ab}))
    out: dict[str, Any] = {
        "options": asdict(opts),
        "n_votes": sum(not v.repeat for v in votes),
        "n_repeat_votes": sum(v.repeat for v in votes),
        "n_pairs": len({v.pair_id for v in votes}),
        "n_prompts": len({v.prompt_id for v in votes}),
        "judges": {k: sorted({v.judge for v in votes if v.kind == k}) for k in sorted({v.kind for v in votes})},
        "win_rates": win_rates(votes, by_task=opts.by == "task", **kw),
        "bradley_terry": bradley_terry(votes, **kw),
        "style_controlled": style_controlled(votes, min_n=opts.min_n),
        "agreement": {
            "raters": rater_agreement(votes, **kw),
            "self_consistency": self_consistency(votes, **kw),
        },
        "bias": {"position": position_bias(votes, **kw), "length": length_bias(votes, **kw)},
        "metric_vs_expert": metric_vs_expert(votes, pair_outputs, values, **kw),
        "stopping": stopping_signal(votes),
        "floors": human_floors(votes, **kw),
        "llm_audit": llm_audit(votes, None, **kw),
    }
    judge_settings = project.section("judge", JudgeSettings)
    if judge_settings.llm_first:
        out["llm_audit"] += llm_audit(votes, lambda pid: audit_of(judge_settings, pid), **kw)
    if fallback:
        out["fallback"] = fallback
        out["fallback_note"] = ("no judgments in the default selection; showing the imported collection"
                                + ("s " if len(fallback) > 1 else " ") + ", ".join(fallback))
    if not votes:
        out["note"] = "no judgments in this selection"
        other = q.count_votes_all_splits(project.store)
        if opts.split != "all":
            out["hint"] = (f"{other} judgments are in other splits or collections: " if other else "") + \
                "try `preceptor stats --split all`"
    return out


def fmt(fig: dict[str, Any] | None, pct: bool = True, digits: int = 2) -> str:
    """A figure as text: "0.62 [0.48, 0.75]" / "62% [48–75]" or its note."""
    if not fig:
        return "-"
    if fig.get("value") is None:
        return fig.get("note") or "-"
    v, ci = fig["value"], fig.get("ci")
    if pct:
        s = f"{100 * v:.0f}%"
        return s + (f" [{100 * ci[0]:.0f}–{100 * ci[1]:.0f}]" if ci else "")
    s = f"{v:.{digits}f}"
    return s + (f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]" if ci else "")


__all__: list[str] = ["StatsOptions", "compute", "wilson", "cohen_kappa", "agreement", "bt_fit", "bt_league",
                      "win_rates", "bradley_terry", "rater_agreement", "self_consistency", "position_bias",
                      "length_bias", "metric_vs_expert", "human_floors", "beats_floors", "style_controlled", "league_votes", "stopping_signal", "llm_audit", "figure", "fmt", "Vote", "load_votes"]

