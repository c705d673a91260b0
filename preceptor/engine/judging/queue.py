"""Which pair an expert sees next: the active queue, its explanation and the stopping signal.

Pure functions over what is already known, shared by the expert session (which reads the
store) and ``bench/active_judging.py`` (which replays stored human votes):

* :func:`fit_league` — a Bradley–Terry league from head-to-head counts (ties count half),
  with a Laplace (Gaussian) posterior: strengths ``theta`` and their covariance ``cov``.
  A weak prior (``PRIOR``) keeps it defined from the first vote.
* :func:`matchup_values` — what one more vote between two systems is worth for the question
  "in which order are the systems?": for each pair of systems adjacent in the current
  ranking, how much their intervals overlap (``2·(1 − Φ(z))``), times how reachable a 95 %
  separation is with the votes cast so far (a practically tied pair, which would need
  thousands of votes, counts little), times the share of that pair's variance the vote
  would remove (a rank-one update of the covariance, so a vote on a neighbour's matchup
  counts too).
* :func:`pair_priority` — what the LLM and metric judges say about one pair: inconsistent
  under swap, unparsed, unsure, disagreeing with the metric judge, or a would-be DPO
  training pair with no human verdict. Stored in ``pairs.priority`` after a judge run.
* :func:`choose` — the next pair among candidates (one open pair per matchup, best
  priority first): ``active`` ranks by matchup value plus ``PRIORITY_WEIGHT`` × priority;
  ``random`` by the shuffled queue key; ``sequential`` by pair id.
* :func:`explain` — why a choice was made (``judge next --why``; never shown while judging).
* :func:`stopping` — whether the league is settled (every adjacent pair of systems
  separated at 95 %) and otherwise an estimate of the votes still needed.

numpy is imported inside the functions (the app's start-up path stays light).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ORDERS", "PRIOR", "Z95", "REFIT_VOTES", "PRIORITY_WEIGHT", "League", "Candidate", "Choice", "fit_league",
    "matchup_values", "pair_priority", "choose", "explain", "stopping", "LLM_SETTLED",
]

ORDERS = ("active", "random", "sequential")
PRIOR = 0.5            # precision of the N(0, 1/PRIOR) prior on each strength (logit scale)
Z95 = 1.959963984540054
REFIT_VOTES = 10       # the session refits its cached league after this many new votes
PRIORITY_WEIGHT = 0.5  # a pair's judge signals against the (normalised) league value
REACH = 0.0            # how strongly a far-off separation discounts a matchup (0 was best on synthetic leagues: 0, 0.1, 0.3, 1, 3 tried)
LLM_SETTLED = -1.0     # pairs.priority of a pair the LLM judge settled (served only in audits under llm_first)


def _phi(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


# --- the league ----------------------------------------------------------------------

@dataclass
class League:
    """A Bradley–Terry league with its Laplace posterior (systems as ids)."""

    systems: tuple[int, ...]
    theta: Any            # np.ndarray (s,)
    cov: Any              # np.ndarray (s, s)
    wins: Any             # np.ndarray (s, s): wins[i, j] = (fractional) wins of i over j
    n_votes: float
    index: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.index = {s: i for i, s in enumerate(self.systems)}

    def order(self) -> list[int]:
        """System ids, strongest first (ties broken by id)."""
        return sorted(self.systems, key=lambda s: (-float(self.theta[self.index[s]]), s))

    def adjacent(self) -> list[tuple[int, int]]:
        o = self.order()
        return list(zip(o, o[1:], strict=False))

    def z(self, a: int, b: int) -> float:
        """Separation of a over b in posterior standard deviations."""
        i, j = self.index[a], self.index[b]
        var = float(self.cov[i, i] + self.cov[j, j] - 2 * self.cov[i, j])
        return float(self.theta[i] - self.theta[j]) / math.sqrt(max(var, 1e-12))

    def games(self, a: int, b: int) -> float:
        i, j = self.index[a], self.index[b]
        return float(self.wins[i, j] + self.wins[j, i])


def fit_league(counts: Mapping[tuple[int, int], float], systems: Iterable[int] = (), *, prior: float | None = None) -> League:
    """League from ``counts[(a, b)]`` = (fractional) wins of system a over system b."""
    import numpy as np

    prior = PRIOR if prior is None else prior
    ids = sorted({int(s) for s in systems} | {int(x) for ab in counts for x in ab})
    ix = {s: i for i, s in enumerate(ids)}
    n = len(ids)
    wins = np.zeros((n, n))
    for (a, b), w in counts.items():
        if a != b:
            wins[ix[a], ix[b]] += float(w)
    games = wins + wins.T
    theta = np.zeros(n)
    hess = np.eye(n) * prior
    for _ in range(50):  # Newton on the log posterior (concave: converges in a few steps)
        d = theta[:, None] - theta[None, :]
        p = 1.0 / (1.0 + np.exp(-d))
        grad = wins.sum(axis=1) - (games * p).sum(axis=1) - prior * theta
        info = games * p * (1.0 - p)
        hess = np.diag(info.sum(axis=1)) - info + np.eye(n) * prior
        step = np.linalg.solve(hess, grad)
        theta = theta + step
        if float(np.abs(step).max(initial=0.0)) < 1e-9:
            break
    cov = np.linalg.inv(hess) if n else hess
    return League(tuple(ids), theta, cov, wins, float(games.sum() / 2))


# --- what a vote is worth ------------------------------------------------------------

def _adjacent_weights(league: League) -> list[tuple[int, int, float, Any]]:
    """(i, j, weight, y) per adjacent pair: overlap × reachability, y = e_i − e_j."""
    import numpy as np

    out = []
    total = max(league.n_votes, 1.0)
    for a, b in league.adjacent():
        i, j = league.index[a], league.index[b]
        y = np.zeros(len(league.systems))
        y[i], y[j] = 1.0, -1.0
        var = float(y @ league.cov @ y)
        d = abs(float(league.theta[i] - league.theta[j]))
        z = d / math.sqrt(max(var, 1e-12))
        overlap = 2.0 * (1.0 - _phi(z))
        # votes to reach z = 1.96 if the difference is what it seems (variance ∝ 1/votes)
        need = total * max(Z95 * Z95 / max(z * z, 1e-6) - 1.0, 0.0)
        reach = total / (total + REACH * need)
        out.append((i, j, overlap * reach, y))
    return out


def matchup_values(league: League, matchups: Iterable[tuple[int, int]]) -> dict[tuple[int, int], float]:
    """Value of one more vote on each matchup (a, b) for settling the ranking."""
    import numpy as np

    adj = _adjacent_weights(league)
    out: dict[tuple[int, int], float] = {}
    for a, b in matchups:
        if a not in league.index or b not in league.index or a == b:
            out[(a, b)] = 0.0
            continue
        i, j = league.index[a], league.index[b]
        x = np.zeros(len(league.systems))
        x[i], x[j] = 1.0, -1.0
        p = 1.0 / (1.0 + math.exp(-float(league.theta[i] - league.theta[j])))
        info = p * (1.0 - p)
        s = league.cov @ x
        c = float(x @ s)
        value = 0.0
        for _, _, weight, y in adj:
            var = float(y @ league.cov @ y)
            drop = info * float(y @ s) ** 2 / (1.0 + info * c)  # variance the vote removes from y's difference
            value += weight * drop / max(var, 1e-12)
        out[(a, b)] = value
    return out


def pair_priority(llm: Mapping[str, Any] | None, metric: Mapping[str, Any] | None, *, contested_threshold: float,
                  human: bool = False) -> tuple[float, list[str]]:
    """(priority, reasons) of one pair from its latest LLM and metric verdicts.

    ``llm`` / ``metric``: {"verdict", "winner_output_id", "confidence"}; ``human``: the pair
    already has an expert verdict. A pair the LLM judge decided confidently, consistently
    and in line with the metric judge gets ``LLM_SETTLED`` (and reason "llm settled").
    """
    reasons: list[str] = []
    score = 0.0
    if llm is not None:
        v, conf = llm.get("verdict"), llm.get("confidence")
        if v == "inconsistent":
            score, reasons = score + 1.0, [*reasons, "llm inconsistent under swap"]
        elif v == "unparsed":
            score, reasons = score + 1.0, [*reasons, "llm unparsed"]
        elif conf is not None and conf < contested_threshold:
            score, reasons = score + 0.6, [*reasons, "llm unsure"]
        if metric is not None and v == "win" and metric.get("verdict") == "win" \
                and metric.get("winner_output_id") != llm.get("winner_output_id"):
            score, reasons = score + 0.8, [*reasons, "llm and metric judge disagree"]
        if v == "win" and not human:
            score, reasons = score + 0.3, [*reasons, "would be a DPO pair without a human verdict"]
        if v == "win" and score <= 0.3 + 1e-9:
            return LLM_SETTLED, ["llm settled"]
    return score, reasons


# --- choosing ------------------------------------------------------------------------

@dataclass(frozen=True)
class Candidate:
    """An open pair the expert may judge now (the session offers one per matchup)."""

    pair_id: int
    system_a: int
    system_b: int
    priority: float = 0.0
    key: float = 0.0

    @property
    def matchup(self) -> tuple[int, int]:
        return (min(self.system_a, self.system_b), max(self.system_a, self.system_b))


@dataclass(frozen=True)
class Choice:
    candidate: Candidate
    order: str
    score: float
    value: float
    ranked: tuple[tuple[Candidate, float, float], ...]  # (candidate, score, league value), best first


def choose(candidates: Sequence[Candidate], league: League | None, order: str = "active") -> Choice | None:
    """The next pair among ``candidates`` under ``order``."""
    if order not in ORDERS:
        raise ValueError(f"order {order!r} is not one of {', '.join(ORDERS)}")
    if not candidates:
        return None
    if order == "random":
        ranked = [(c, -c.key, 0.0) for c in sorted(candidates, key=lambda c: (c.key, c.pair_id))]
    elif order == "sequential":
        ranked = [(c, -float(c.pair_id), 0.0) for c in sorted(candidates, key=lambda c: c.pair_id)]
    else:
        values = matchup_values(league, {c.matchup for c in candidates}) if league is not None else {}
        top = max(values.values(), default=0.0)
        scored = []
        for c in candidates:
            v = values.get(c.matchup, 0.0)
            norm = v / top if top > 0 else 0.0
            scored.append((c, norm + PRIORITY_WEIGHT * max(c.priority, 0.0), v))
        ranked = sorted(scored, key=lambda t: (-t[1], t[0].key, t[0].pair_id))
    best = ranked[0]
    return Choice(best[0], order, best[1], best[2], tuple(ranked))


def explain(choice: Choice | None, league: League | None, names: Mapping[int, str], *,
            reasons: Sequence[str] = (), alternatives: int = 3) -> dict[str, Any]:
    """Why this pair (JSON-able): the order, the matchup's value, the league, the pair's signals."""
    if choice is None:
        return {"order": None, "why": "nothing left to serve"}
    c = choice.candidate
    na, nb = names.get(c.system_a, str(c.system_a)), names.get(c.system_b, str(c.system_b))
    out: dict[str, Any] = {"order": choice.order, "pair_id": c.pair_id, "matchup": [na, nb],
                           "score": round(choice.score, 4), "league_value": round(choice.value, 6),
                           "priority": c.priority, "signals": list(reasons)}
    if choice.order == "random":
        out["why"] = "random order: the next pair in the shuffled queue"
    elif choice.order == "sequential":
        out["why"] = "sequential order: the open pair with the lowest id"
    else:
        parts = []
        if league is not None and c.system_a in league.index and c.system_b in league.index:
            z = abs(league.z(c.system_a, c.system_b))
            parts.append(f"{na} vs {nb}: separated by {z:.2f} sd after {league.games(c.system_a, c.system_b):g} votes"
                         f" ({'unresolved' if z < Z95 else 'resolved'} at 95%)")
        if reasons:
            parts.append("pair signals: " + ", ".join(reasons))
        out["why"] = "; ".join(parts) or "no votes yet: the first pair of the shuffled queue"
    if league is not None:
        out["league"] = [{"system": names.get(s, str(s)), "strength": round(float(league.theta[league.index[s]]), 3)}
                         for s in league.order()]
    out["alternatives"] = [{"pair_id": a.pair_id, "matchup": [names.get(a.system_a, str(a.system_a)),
                                                              names.get(a.system_b, str(a.system_b))],
                            "score": round(s, 4)} for a, s, _ in choice.ranked[1:1 + alternatives]]
    return out


# --- the stopping signal -------------------------------------------------------------

def stopping(league: League, names: Mapping[int, str] | None = None, *, practical_factor: float = 10.0) -> dict[str, Any]:
    """Is the ranking settled? Every adjacent pair separated at 95 % (posterior z ≥ 1.96).

    Otherwise ``votes_needed`` estimates the votes still needed for the unseparated adjacent
    pairs (variance falls as 1/votes, the difference stays as it seems); a pair that would
    need more than ``practical_factor`` × the votes cast so far is reported as practically
    tied instead (more votes are unlikely to order it).
    """
    names = names or {}
    total = max(league.n_votes, 1.0)
    rows, needed, tied = [], 0.0, []
    for a, b in league.adjacent():
        z = league.z(a, b)
        row: dict[str, Any] = {"higher": names.get(a, str(a)), "lower": names.get(b, str(b)), "z": round(z, 2),
                               "separated": z >= Z95, "votes": league.games(a, b)}
        if z < Z95:
            need = total * (Z95 * Z95 / max(z * z, 1e-9) - 1.0)
            if need > practical_factor * total:
                row["practically_tied"] = True
                tied.append(f"{row['higher']} ~ {row['lower']}")
            else:
                row["votes_needed"] = int(math.ceil(need))
                needed = max(needed, need)
        rows.append(row)
    settled = bool(rows) and all(r["separated"] for r in rows)
    out: dict[str, Any] = {"settled": settled, "n_votes": league.n_votes, "adjacent": rows,
                           "votes_needed": 0 if settled else int(math.ceil(needed)), "practically_tied": tied}
    if not rows:
        out["note"] = "needs at least two systems with votes"
    elif settled:
        out["summary"] = "settled: every adjacent pair of systems is separated at 95%"
    elif needed > 0:
        out["summary"] = (f"not settled: about {out['votes_needed']} more votes needed"
                          + (f" ({', '.join(tied)} practically tied)" if tied else ""))
    else:
        out["summary"] = "settled as far as votes can tell: " + ", ".join(tied) + " practically tied"
    return out


# --- the store side: what the expert session calls -------------------------------------

def refresh_priorities(store: Any, settings: Any, pair_ids: Sequence[int]) -> int:
    """Recompute ``pairs.priority`` of these pairs from their latest LLM and metric verdicts
    (after a judge run). Under ``[judge] llm_first`` a settled pair keeps ``LLM_SETTLED``
    unless drawn for an audit (``audit_share``). Returns the pairs updated."""
    from preceptor.db import judging as q
    from preceptor.engine.judging.pairs import unit_hash

    ids = sorted({int(i) for i in pair_ids})
    if not ids:
        return 0
    llm = q.latest_verdicts(store, ids, "llm")
    metric = q.latest_verdicts(store, ids, "metric")
    human = q.pairs_with_expert_votes(store, ids)
    values = []
    for pid in ids:
        score, reasons = pair_priority(llm.get(pid), metric.get(pid), contested_threshold=settings.contested_threshold,
                                       human=pid in human)
        if score == LLM_SETTLED and unit_hash(settings.seed, "audit", pid) < settings.audit_share:
            score = 0.05  # an audit: experts check the LLM judge here
        values.append((pid, score))
    q.set_priorities(store, values)
    return len(values)


def audit_of(settings: Any, pair_id: int) -> bool:
    from preceptor.engine.judging.pairs import unit_hash

    return unit_hash(settings.seed, "audit", pair_id) < settings.audit_share


class ExpertQueue:
    """The next-pair choice of one expert session, with its league cached per ``REFIT_VOTES`` picks."""

    LEAGUE_TTL = 30.0  # seconds: others' votes reach the cached league at least this often

    def __init__(self, settings: Any, order: str | None = None) -> None:
        self.settings = settings
        self.order = order or settings.queue
        if self.order not in ORDERS:
            raise ValueError(f"order {self.order!r} is not one of {', '.join(ORDERS)}")
        self._counts: dict[tuple[int, int], float] | None = None
        self._league: League | None = None
        self._matchups: list[tuple[int, int]] = []
        self._picks = 0
        self._fitted_at = 0.0
        self.last: Choice | None = None

    def invalidate(self) -> None:
        self._counts = None

    def _refresh(self, store: Any, query: Any) -> None:
        """Re-read the matchups and the human head-to-head counts (every REFIT_VOTES picks or LEAGUE_TTL s)."""
        import time

        from preceptor.db import judging as q

        if (self._counts is None or self._picks >= REFIT_VOTES
                or time.monotonic() - self._fitted_at > self.LEAGUE_TTL):
            self._matchups = q.matchups(store)
            self._counts = q.human_matchup_wins(store, query)
            self._picks, self._fitted_at = 0, time.monotonic()

    def next_pair(self, store: Any, query: Any, expert_id: int, expert_name: str, t: float,
                  exclude: Sequence[int] = (), host: str | None = None) -> int | None:
        """The pair id this expert should judge next (call inside the serving transaction);
        ``host`` is the session, so the same expert elsewhere never gets the same pair."""
        from preceptor.db import judging as q

        floor = LLM_SETTLED if self.settings.llm_first else None
        self._picks += 1
        if self.order != "active":
            row = q.next_open_pair(store, query, expert_id, expert_name, t, exclude, host, order=self.order, min_priority=floor)
            self.last = None if row is None else Choice(_cand(row), self.order, 0.0, 0.0, ((_cand(row), 0.0, 0.0),))
            return None if row is None else int(row[0])
        self._refresh(store, query)
        cands = []
        for m in self._matchups:
            row = q.next_open_pair(store, query, expert_id, expert_name, t, exclude, host, order="priority", matchup=m,
                                   min_priority=floor)
            if row is not None:
                cands.append(_cand(row))
        if not cands:  # pairs without systems (older projects): the plain priority order
            row = q.next_open_pair(store, query, expert_id, expert_name, t, exclude, host, order="priority", min_priority=floor)
            if row is None:
                self.last = None
                return None
            cands = [_cand(row)]
        # the league over the systems voted on or still to be compared under this selection
        self._league = fit_league(self._counts or {}, {s for c in cands for s in (c.system_a, c.system_b)})
        self.last = choose(cands, self._league, "active")
        assert self.last is not None
        return self.last.candidate.pair_id

    def explain(self, store: Any, query: Any) -> dict[str, Any]:
        """Why the last pair was chosen (``judge next --why``)."""
        from preceptor.db import judging as q

        names = q.system_names(store)
        league = self._league if self.order == "active" else None
        reasons: list[str] = []
        if self.last is not None:
            pid = self.last.candidate.pair_id
            llm = q.latest_verdicts(store, [pid], "llm").get(pid)
            metric = q.latest_verdicts(store, [pid], "metric").get(pid)
            _, reasons = pair_priority(llm, metric, contested_threshold=self.settings.contested_threshold,
                                       human=bool(q.pairs_with_expert_votes(store, [pid])))
            if reasons == ["llm settled"]:
                reasons = ["llm settled; drawn for an audit of the LLM judge"] if audit_of(self.settings, pid) else reasons
        out = explain(self.last, league, names, reasons=reasons)
        if league is not None:
            out["stopping"] = stopping(league, names)
        return out


def _cand(row: Any) -> Candidate:
    return Candidate(int(row[0]), int(row[1] or 0), int(row[2] or 0), float(row[3] or 0.0), float(row[4] or 0.0))
