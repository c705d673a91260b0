"""LLMClient against a real loopback OpenAI-compatible server with injected faults."""

from __future__ import annotations

import threading

import pytest

from preceptor.db import cache as q_cache
from preceptor.engine.generation.llm import BUDGET_EXCEEDED, LLMClient, cache_key
from preceptor.errors import Cancelled
from preceptor.testing.llm_server import StubServer


def _requests(n: int, tag: str = "q") -> list[list[dict[str, str]]]:
    return [[{"role": "user", "content": f"{tag} {i}"}] for i in range(n)]


def _client(project, server, **kw):
    kw.setdefault("backoff_base", 0.01)
    kw.setdefault("timeout", 5.0)
    return LLMClient(project.store, model="openai/stub", api_base=server.url, params={"api_key": "test", **kw.pop("params", {})}, **kw)


def test_complete_many_yields_each_index_once_and_caches(project):
    with StubServer() as server, _client(project, server, concurrency=4) as client:
        results = dict(client.complete_many(_requests(10)))
        assert sorted(results) == list(range(10))
        assert results[3].text == "stub answer to: q 3"
        assert results[3].prompt_tokens == 2 and results[3].completion_tokens == 5
        assert not results[3].cached and results[3].raw["choices"][0]["message"]["content"] == "stub answer to: q 3"
        assert client.calls_made == 10 and len(server.requests) == 10
        assert q_cache.count(project.store, "openai/stub") == 10
        # the API key never reaches the cache's request record
        row = project.store.one("SELECT request FROM llm_cache LIMIT 1")
        assert "api_key" not in row[0] and '"q ' in row[0]

        again = dict(client.complete_many(_requests(10)))
        assert client.calls_made == 10 and len(server.requests) == 10  # a rerun costs zero calls
        assert all(c.cached and c.cost == 0.0 for c in again.values())
        assert again[7].text == results[7].text


def test_faults_are_retried_and_every_item_ends_stored(project):
    with StubServer(hang=1.0) as server, _client(project, server, concurrency=3, timeout=0.3, max_retries=3) as client:
        logs: list[str] = []
        client.on_log = logs.append
        server.fail_next("429", 2)
        server.fail_next("500", 1)
        server.fail_next("malformed", 1)
        server.fail_next("timeout", 1)
        results = list(client.complete_many(_requests(8)))
    idx = [i for i, _ in results]
    assert sorted(idx) == list(range(8))  # each item exactly once
    assert all(c.error is None and c.text == f"stub answer to: q {i}" for i, c in results)
    assert server.faults_served == ["429", "429", "500", "malformed", "timeout"]
    assert client.retries == 5 and client.calls_made == 13 and len(server.requests) == 13
    assert len(logs) == 5 and any("RateLimitError (HTTP 429)" in line for line in logs)
    assert any("Timeout" in line for line in logs)


def test_retries_are_bounded_and_failures_carry_the_error(project):
    with StubServer() as server, _client(project, server, concurrency=2, max_retries=2) as client:
        server.fail_next("500", 100)
        results = dict(client.complete_many(_requests(3)))
    assert sorted(results) == [0, 1, 2]
    for c in results.values():
        assert c.text is None
        assert c.error == "InternalServerError (HTTP 500): internal error (stub) (after 3 attempts)"
        assert c.attempts == 3
    assert client.calls_made == 9 and len(server.requests) == 9
    assert q_cache.count(project.store) == 0  # failures are never cached


@pytest.mark.parametrize("concurrency", [1, 8, 16])
def test_budget_is_a_hard_cap_at_any_concurrency(project, concurrency):
    # every answer: 5 completion tokens at $0.006 = $0.03 a call; max_tokens 5 is its worst case
    params = {"input_cost_per_token": 0.0, "output_cost_per_token": 0.006, "max_tokens": 5}
    with StubServer(latency=0.02) as server, _client(project, server, concurrency=concurrency, budget_usd=0.30,
                                                      params=params) as client:
        results = dict(client.complete_many(_requests(40)))
    assert sorted(results) == list(range(40))
    ok = [c for c in results.values() if c.error is None]
    stopped = [c for c in results.values() if c.error == BUDGET_EXCEEDED]
    assert 9 <= len(server.requests) <= 10 and len(ok) == len(server.requests)  # never more, never 0
    assert len(stopped) == 40 - len(ok)
    assert client.budget_hit and client.cost_total <= 0.30 + 1e-9


def test_unknown_reply_length_reserves_the_largest_seen(project):
    # no max_tokens: the first request reserves 256 reply tokens ($0.256 of $0.30), later ones the
    # largest reply seen (5 tokens): the cap is kept and calls still go on after the first
    params = {"input_cost_per_token": 0.0, "output_cost_per_token": 0.001}
    with StubServer() as server, _client(project, server, concurrency=1, budget_usd=0.30, params=params) as client:
        results = dict(client.complete_many(_requests(80)))
    assert client.largest_completion == 5
    assert 50 <= len(server.requests) <= 60 and client.cost_total <= 0.30 + 1e-9
    assert sum(c.error is None for c in results.values()) == len(server.requests)


def test_a_budget_on_an_unknown_price_is_refused(project):
    from preceptor.errors import PreceptorError

    with StubServer() as server, _client(project, server, budget_usd=1.0, system="api") as client:
        with pytest.raises(PreceptorError) as err:
            list(client.complete_many(_requests(2)))
    assert err.value.title == "Budget on an unknown price"
    assert "system 'api' (openai/stub)" in err.value.message and "input_cost_per_token" in err.value.hint
    assert len(server.requests) == 0


def test_a_rejected_key_is_not_retried_and_names_the_variable(project):
    from preceptor.errors import PreceptorError

    with StubServer() as server, _client(project, server, max_retries=5, system="api", concurrency=1,
                                         params={"api_key_env": "STUB_KEY"}) as client:
        server.fail_next("401", 100)
        with pytest.raises(PreceptorError) as err:
            list(client.complete_many(_requests(3)))
    assert err.value.title == "API key rejected"
    assert "STUB_KEY" in err.value.hint and "system 'api'" in err.value.message
    assert len(server.requests) == 1 and client.retries == 0  # one attempt, and no other request sent after it


@pytest.mark.filterwarnings("ignore:coroutine .* was never awaited:RuntimeWarning")
def test_cancel_stops_and_raises(project):
    cancel = threading.Event()
    with StubServer(latency=0.05) as server, _client(project, server, concurrency=2) as client:
        got = []
        with pytest.raises(Cancelled):
            for i, _c in client.complete_many(_requests(40), cancel=cancel):
                got.append(i)
                if len(got) == 3:
                    cancel.set()
        assert len(got) < 40
        sent = len(server.requests)
        assert sent < 40
    # what finished before the cancel is cached; nothing is duplicated
    assert q_cache.count(project.store) >= 3


def test_identical_requests_share_one_call(project):
    reqs = [[{"role": "user", "content": "same"}]] * 3 + [[{"role": "user", "content": "other"}]]
    with StubServer() as server, _client(project, server) as client:
        results = dict(client.complete_many(reqs))
    assert sorted(results) == [0, 1, 2, 3]
    assert len(server.requests) == 2
    assert results[0].text == results[1].text == results[2].text == "stub answer to: same"


def test_cache_key_uses_model_messages_and_semantic_params():
    msgs = [{"role": "user", "content": "hi"}]
    base = cache_key("m", msgs, {"temperature": 0.0})
    assert cache_key("m", msgs, {"temperature": 0.0, "api_key": "secret", "timeout": 3}) == base
    assert cache_key("m", msgs, {"temperature": 0.7}) != base
    assert cache_key("m2", msgs, {"temperature": 0.0}) != base
    assert cache_key("m", [{"role": "user", "content": "hi!"}], {"temperature": 0.0}) != base


def test_params_reach_the_server(project):
    params = {"temperature": 0.3, "max_tokens": 17, "system_prompt": "x", "concurrency": 2,
              "chat_template_kwargs": {"enable_thinking": False}}
    with StubServer() as server, _client(project, server, params=params) as client:
        list(client.complete_many(_requests(1)))
    body = server.requests[0]
    assert body["temperature"] == 0.3 and body["max_tokens"] == 17 and body["model"] == "stub"
    assert body["chat_template_kwargs"] == {"enable_thinking": False}
    assert "system_prompt" not in body and "concurrency" not in body and "api_key" not in body
    assert body["messages"] == [{"role": "user", "content": "q 0"}]


def test_prices_come_from_the_local_cost_map_or_params():
    client = LLMClient(None, model="openrouter/openai/gpt-4o-mini")
    pin, pout = client.prices()
    assert 0 < pin < pout  # gpt-4o-mini's own prices (the map has no openrouter entry)
    assert LLMClient(None, model="openai/stub").prices() is None  # unknown, not free
    custom = LLMClient(None, model="openai/stub", params={"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6})
    assert custom.prices() == (1e-6, 2e-6)
