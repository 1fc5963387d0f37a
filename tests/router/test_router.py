"""The Router as a library: cost, events and observers, swap, isolation, strategies, conversation, introspection."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import Counter

import pytest

from turnout import ConfigError, Conversation, LoggingObserver, Router
from turnout.config import ProviderSpec
from turnout.events import (
    AttemptCharged,
    AttemptFailed,
    AttemptStarted,
    AttemptSucceeded,
    FallbackTaken,
    RequestStarted,
    ResponseCompleted,
)
from turnout.schema import load_text
from turnout.testing import OpenAIFake, ToolCall

HI = [{"role": "user", "content": "hello there"}]


def mock_routes(*options: str, strategy: str | None = None, prices: tuple[str, ...] = (), route: str = "") -> str:
    """Mock providers q0..qN with the given options, models n0..nN, route `r` over them (or a pool of them)."""
    providers = "\n".join(f"  q{i}: {{driver: mock, options: {opt}}}" for i, opt in enumerate(options))
    models = "\n".join(
        f"  n{i}: {{provider: q{i}, price: {prices[i] if i < len(prices) else '{input: 1, output: 2}'}}}"
        for i in range(len(options))
    )
    names = [f"n{i}" for i in range(len(options))]
    pools = ""
    chain = ", ".join(names)
    if strategy is not None:
        members = ", ".join(
            f"{{model: n{i}, weight: {3 if i == 0 else 1}}}" if strategy == "weighted" else f"n{i}"
            for i in range(len(options))
        )
        pools = f"pools:\n  p:\n    strategy: {strategy}\n    members: [{members}]\n"
        chain = "p"
    return (
        f"version: 1\ndefaults:\n  retry: {{attempts: 0}}\nproviders:\n{providers}\nmodels:\n{models}\n{pools}"
        f"routes:\n  r:\n    chain: [{chain}]\n{route}"
    )


FAIL_500 = "{faults: [{kind: status, status: 500}]}"
FAIL_429 = "{faults: [{kind: status, status: 429}]}"
FAIL_AUTH = "{faults: [{kind: status, status: 401}]}"


async def test_cost_of_a_request_that_failed_over_twice(build):
    """Two fast HTTP errors cost 0 (known unbilled); the request costs exactly what the third attempt billed."""
    async with build(mock_routes(FAIL_500, FAIL_429, "{reply: echo}")) as router:
        reply = await router.chat(model="r", messages=HI)
    usage = reply.usage
    expected = (usage.prompt_tokens * 1 + usage.completion_tokens * 2) / 1e6
    assert [a.cost_usd for a in reply.attempts] == [0.0, 0.0, pytest.approx(expected)]
    assert reply.cost_usd == pytest.approx(expected)
    assert reply.route == "r"
    assert reply.served_by == "q2/n2"


async def test_cost_is_unknown_when_a_failed_attempt_may_have_been_billed(build):
    """A timed-out attempt may have been billed: the request's cost is None, never a made-up number."""
    async with build(mock_routes("{faults: [{kind: hang}]}", "{}", route="    attempt_timeout: 50ms\n")) as router:
        reply = await router.chat(model="r", messages=HI)
    assert reply.attempts[0].cost_usd is None
    assert reply.cost_usd is None


async def test_a_refused_connection_is_known_to_cost_nothing(build, unused_tcp_port):
    """An upstream that refuses the connection never saw the request: the fallback's cost stays known."""
    text = (
        "version: 1\ndefaults:\n  retry: {attempts: 0}\nproviders:\n"
        f"  down: {{driver: openai, base_url: 'http://127.0.0.1:{unused_tcp_port}/v1', api_key: k}}\n"
        "  up: {driver: mock}\nmodels:\n"
        "  a: {provider: down, price: {input: 1, output: 2}}\n  b: {provider: up, price: {input: 1, output: 2}}\n"
        "routes:\n  r: {chain: [a, b]}\n"
    )
    async with build(text, real_time=True) as router:
        reply = await router.chat(model="r", messages=HI)
    assert reply.attempts[0].error_class == "connection"
    assert reply.attempts[0].cost_usd == 0.0
    expected = (reply.usage.prompt_tokens * 1 + reply.usage.completion_tokens * 2) / 1e6
    assert reply.cost_usd == pytest.approx(expected)


async def test_cost_is_unknown_when_the_model_has_no_price(build):
    """A model without a price has an unknown cost (None)."""
    yaml = "version: 1\nproviders:\n  q: {driver: mock}\nmodels:\n  n: {provider: q}\nroutes:\n  r: {chain: [n]}\n"
    async with build(yaml) as router:
        reply = await router.chat(model="r", messages=HI)
    assert reply.usage.known
    assert reply.cost_usd is None


async def test_events_tell_the_story_of_a_failover(build, recorder):
    """Observers see started, attempt failed, fallback, attempt succeeded, its charge and completed, in order."""
    async with build(mock_routes(FAIL_500, "{}")) as router:
        await router.chat(model="r", messages=HI, request_id="req-1")
    kinds = [type(e) for e in recorder.events]
    assert kinds == [
        RequestStarted,
        AttemptStarted,
        AttemptFailed,
        FallbackTaken,
        AttemptStarted,
        AttemptSucceeded,
        AttemptCharged,
        ResponseCompleted,
    ]
    assert {e.request_id for e in recorder.events} == {"req-1"}
    done = recorder.events[-1]
    assert done.served_by == "q1/n1"
    assert done.error_class is None
    assert done.router_overhead is not None and done.router_overhead >= 0
    assert [a.outcome for a in done.attempts] == ["error", "success"]


async def test_a_raising_observer_never_breaks_a_request(build, recorder, caplog):
    """An observer that raises is logged; the request and the other observers carry on."""

    def broken(event):
        raise RuntimeError("observer bug")

    async with build(mock_routes("{}"), observers=(broken, recorder)) as router:
        with caplog.at_level(logging.ERROR, logger="turnout.router"):
            reply = await router.chat(model="r", messages=HI)
    assert reply.text == "hello there"
    assert len(recorder.of(ResponseCompleted)) == 1
    assert "observer bug" in caplog.text


async def test_stream_completion_event_carries_time_to_first_token(build, recorder):
    """A stream's ResponseCompleted carries usage, cost and time to first token."""
    async with build(mock_routes("{}")) as router:
        async for _ in router.stream(model="r", messages=HI):
            pass
    done = recorder.of(ResponseCompleted)[0]
    assert done.stream
    assert done.time_to_first_token is not None
    assert done.usage.known
    assert done.cost_usd is not None


async def test_failed_request_completes_with_its_error_class(build, recorder):
    """A request nothing could serve still ends with one ResponseCompleted naming the error class."""
    async with build(mock_routes(FAIL_500)) as router:
        with pytest.raises(Exception, match="all upstreams failed"):
            await router.chat(model="r", messages=HI)
    done = recorder.of(ResponseCompleted)
    assert [(d.served_by, d.error_class) for d in done] == [(None, "server_error")]


async def test_swap_keeps_health_of_unchanged_deployments(build):
    """After a swap an open breaker stays open if the deployment and its policy are unchanged, else it resets."""
    yaml = mock_routes(FAIL_AUTH, "{}")
    async with build(yaml) as router:
        await router.chat(model="r", messages=HI)
        entry = router.health["q0/n0"]
        assert entry.breaker.state == "open"
        same = load_text(yaml.replace("chain: [n0, n1]", "chain: [n0, n1]\n    description: renamed"))
        router.swap(same)
        assert router.health["q0/n0"] is entry
        assert router.config.routes["r"].description == "renamed"
        changed = load_text(
            yaml.replace("retry: {attempts: 0}", "retry: {attempts: 0}\n  breaker: {failure_threshold: 9}")
        )
        router.swap(changed)
        assert router.health["q0/n0"].breaker.state == "closed"


async def test_swap_with_a_fixed_provider_resets_its_open_breaker(build):
    """A reload that changes how a deployment is called (its provider's key, URL or options) gives it fresh health."""
    yaml = mock_routes(FAIL_AUTH, "{}", prices=("{input: 1, output: 2}", "{input: 1, output: 2}"))
    async with build(yaml) as router:
        await router.chat(model="r", messages=HI)
        assert router.health["q0/n0"].breaker.state == "open"
        repriced = load_text(yaml.replace("n0: {provider: q0, price: {input: 1", "n0: {provider: q0, price: {input: 3"))
        assert repriced.models["n0"].price != router.config.models["n0"].price
        router.swap(repriced)  # a price is not how the deployment is called: its state is kept
        assert router.health["q0/n0"].breaker.state == "open"
        router.swap(load_text(yaml.replace(FAIL_AUTH, "{}")))  # the provider is fixed (as a new api_key would)
        assert router.health["q0/n0"].breaker.state == "closed"
        reply = await router.chat(model="r", messages=HI)
    assert reply.served_by == "q0/n0"


async def test_swap_with_a_bad_config_keeps_the_old_graph(build):
    """A config whose driver cannot be built raises ConfigError naming the provider; the old graph stays."""
    async with build(mock_routes("{}")) as router:
        before = router.graph
        bad = dataclasses.replace(router.config, providers={"q0": ProviderSpec("q0", "no-such-driver")})
        with pytest.raises(ConfigError) as info:
            router.swap(bad)
        assert router.graph is before
        assert "providers.q0" in str(info.value)
        assert (await router.chat(model="r", messages=HI)).text == "hello there"


async def test_in_flight_requests_finish_on_their_graph_during_a_swap(build):
    """A request running while the graph is swapped (its deployment removed) completes normally."""
    async with build(mock_routes("{latency: 50ms}", "{}")) as router:
        task = asyncio.create_task(router.chat(model="r", messages=HI))
        await asyncio.sleep(0.01)
        router.swap(load_text(mock_routes("{}")))
        reply = await task
    assert reply.served_by == "q0/n0"


async def test_two_routers_in_one_process_do_not_interfere(recorder):
    """Breakers and observers belong to one Router: tripping one leaves the other untouched."""
    yaml = mock_routes(FAIL_AUTH, "{}")
    seen_a, seen_b = [], []
    async with Router.from_yaml(yaml, observers=[seen_a.append]) as a, Router.from_yaml(yaml) as b:
        b.add_observer(seen_b.append)
        await a.chat(model="r", messages=HI)
        assert a.health["q0/n0"].breaker.state == "open"
        assert b.health["q0/n0"].breaker.state == "closed"
        assert seen_b == []
        b.remove_observer(seen_b.append)
    assert seen_a


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        ("priority", {"q0/n0": 40}),
        ("round_robin", {"q0/n0": 14, "q1/n1": 13, "q2/n2": 13}),
        ("weighted", {"q0/n0": 24, "q1/n1": 8, "q2/n2": 8}),
    ],
)
async def test_deterministic_strategy_distributions(build, strategy, expected):
    """priority always picks the first; round_robin rotates evenly; weighted 3:1:1 is exact over a cycle."""
    async with build(mock_routes("{}", "{}", "{}", strategy=strategy)) as router:
        served = [(await router.chat(model="r", messages=HI)).served_by for _ in range(40)]
    assert Counter(served) == expected


async def test_weighted_is_smooth(build):
    """Smooth weighted round-robin interleaves (A A B A), it does not send bursts."""
    async with build(mock_routes("{}", "{}", strategy="weighted")) as router:
        served = [(await router.chat(model="r", messages=HI)).served_by[:2] for _ in range(8)]
    assert served == ["q0", "q0", "q1", "q0"] * 2


async def test_least_busy_spreads_concurrent_requests(build):
    """least_busy sends concurrent requests to the member with the fewest in flight."""
    async with build(mock_routes("{latency: 30ms}", "{latency: 30ms}", strategy="least_busy")) as router:
        replies = await asyncio.gather(*(router.chat(model="r", messages=HI) for _ in range(10)))
    assert Counter(r.served_by for r in replies) == {"q0/n0": 5, "q1/n1": 5}


async def test_lowest_latency_prefers_the_fast_member_but_keeps_exploring(build):
    """The fast member gets most traffic; epsilon exploration still sends some to the slow one."""
    async with build(mock_routes("{latency: 20ms}", "{}", strategy="lowest_latency"), seed=3, real_time=True) as router:
        served = [(await router.chat(model="r", messages=HI)).served_by for _ in range(60)]
    counts = Counter(served[2:])  # the first two measure each member once
    assert counts["q1/n1"] >= 45
    assert counts["q0/n0"] >= 1


async def test_lowest_latency_returns_traffic_to_a_recovered_member(build):
    """A member that failed (even fast) sinks in the order; once healthy again, exploration finds it and it leads."""
    yaml = mock_routes(FAIL_500, "{latency: 5ms}", strategy="lowest_latency")
    async with build(yaml, seed=5, real_time=True) as router:
        before = [(await router.chat(model="r", messages=HI)).attempts[0].deployment for _ in range(20)]
        router.swap(load_text(mock_routes("{}", "{latency: 5ms}", strategy="lowest_latency")))  # health is kept
        after = [(await router.chat(model="r", messages=HI)).served_by for _ in range(60)]
    assert before.count("q0/n0") <= 5  # tried first once, then only when exploring
    assert after[-20:].count("q0/n0") >= 15


async def test_lowest_cost_picks_the_cheapest_for_the_request(build):
    """lowest_cost orders by input price x prompt estimate + output price x max tokens."""
    prices = ("{input: 5, output: 5}", "{input: 0.5, output: 1}", "{input: 1, output: 1}")
    async with build(mock_routes("{}", "{}", "{}", strategy="lowest_cost", prices=prices)) as router:
        served = {(await router.chat(model="r", messages=HI, max_tokens=50)).served_by for _ in range(5)}
    assert served == {"q1/n1"}


async def test_lowest_cost_survives_an_absurd_max_tokens(build):
    """A max_tokens too large for a float (10**400) still ranks by price instead of raising OverflowError."""
    prices = ("{input: 1, output: 5}", "{input: 1, output: 1}")
    async with build(mock_routes("{}", "{}", strategy="lowest_cost", prices=prices)) as router:
        reply = await router.chat(model="r", messages=HI, max_tokens=10**400)
        streamed = router.stream(model="r", messages=HI, max_tokens=10**400)
        async for _ in streamed:
            pass
    assert (reply.served_by, streamed.served_by) == ("q1/n1", "q1/n1")


async def test_conversation_keeps_history_across_turns(build):
    """Conversation appends each user turn and reply; a streamed turn joins the history when complete."""
    async with build(mock_routes("{}")) as router:
        conv = Conversation(router, model="r", system="be brief")
        first = await conv.send("hi")
        second = await conv.send("again")
        parts = [c.content async for c in conv.stream("third") if c.content]
    assert (first.text, second.text, "".join(parts)) == ("hi", "again", "third")
    assert [m["role"] for m in conv.messages] == [
        "system",
        "user",
        "assistant",
        "user",
        "assistant",
        "user",
        "assistant",
    ]
    assert conv.messages[-1]["content"] == "third"


async def test_a_streamed_turns_tool_calls_join_the_history(fakes, build):
    """Conversation.stream keeps the streamed tool calls (reassembled from their fragments) in the history, so the
    next turn can answer them; a text-only turn stays plain text."""
    fake = await fakes()
    calls = [ToolCall("get_weather", {"city": "Paris"}, id="call_a"), ToolCall("get_time", {"tz": "CET"}, id="call_b")]
    fake.script("chat", fake.stream_tool_calls(calls), fake.stream_text(["It is ", "sunny."]))
    yaml = f"version: 1\nproviders:\n  p: {{driver: openai, base_url: {fake.url}/v1, api_key: k}}\n"
    yaml += "models:\n  m: {provider: p}\nroutes:\n  r: {chain: [m]}\n"
    async with build(yaml) as router:
        conv = Conversation(router, model="r")
        [c async for c in conv.stream("weather and time?", tools=[{"type": "function", "function": {"name": "x"}}])]
        turn = conv.messages[-1]
        conv.messages.extend([{"role": "tool", "tool_call_id": c["id"], "content": "ok"} for c in turn["tool_calls"]])
        [c async for c in conv.stream("thanks")]
    assert turn == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
            {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": '{"tz": "CET"}'}},
        ],
    }
    assert fake.last.json["messages"][1:4] == [turn, *conv.messages[2:4]]  # sent back with the tool results
    assert conv.messages[-1] == {"role": "assistant", "content": "It is sunny."}


async def test_models_readiness_and_credentials(build):
    """models() lists routes; readiness shows disabled providers and routes without usable members."""
    yaml = (
        "version: 1\nproviders:\n  q: {driver: mock}\n"
        "  nokey: {driver: openai, api_key: \"{{ env.MISSING_KEY | default('') }}\"}\n"
        "models:\n  n: {provider: q}\n  o: {provider: nokey}\n"
        "routes:\n  r: {chain: [n, o]}\n  dead: {chain: [o]}\n"
    )
    async with build(yaml) as router:
        assert [m.id for m in await router.models()] == ["r", "dead"]
        ready = router.readiness()
        checks = {c.provider: c.ok for c in await router.check_credentials()}
    assert ready["ready"] is False
    assert ready["routes"] == {"r": {"usable": 1, "total": 1}, "dead": {"usable": 0, "total": 0}}
    assert "nokey" in ready["disabled_providers"]
    assert checks == {"q": True, "nokey": False}
    assert router.graph.routes["r"].excluded[0].deployment == "nokey/o"


async def test_from_file_and_the_logging_observer(tmp_path, caplog):
    """Router.from_file loads a routing file; the built-in LoggingObserver logs a failover at WARNING."""
    path = tmp_path / "routes.yaml"
    path.write_text(mock_routes(FAIL_500, "{}"))
    router = Router.from_file(path, observers=[LoggingObserver()])
    with caplog.at_level(logging.WARNING, logger="turnout.events"):
        async with router:
            reply = await router.chat(model="r", messages=HI)
    assert reply.served_by == "q1/n1"
    assert "AttemptFailed" in caplog.text and "FallbackTaken" in caplog.text
    assert "hello there" not in caplog.text  # events carry no request content


def test_a_router_works_across_event_loops():
    """A Router whose session was made on one event loop gets a fresh one when used from another loop."""
    router = Router.from_yaml(mock_routes("{}"))
    asyncio.run(router.start())  # the session now belongs to a loop that is gone

    async def ask() -> str:
        async with OpenAIFake() as fake:
            fake.script("chat", fake.text("over http"))
            yaml = (
                f"version: 1\nproviders:\n  o: {{driver: openai, base_url: '{fake.url}/v1', api_key: sk-x}}\n"
                "models:\n  m: {provider: o}\nroutes:\n  r: {chain: [m]}\n"
            )
            router.swap(load_text(yaml))
            try:
                return (await router.chat(model="r", messages=HI)).text
            finally:
                await router.aclose()

    assert asyncio.run(ask()) == "over http"
