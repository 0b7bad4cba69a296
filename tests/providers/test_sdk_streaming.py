"""Streaming fallback through the real ``openai`` and ``anthropic`` clients (retries off).

A loopback server sends server-sent events as each API documents its streaming format:

* OpenAI chat completions: ``data: {...chat.completion.chunk...}`` lines, then
  ``data: [DONE]``; an error in the middle of a stream is a ``data: {"error": {...}}`` line.
* Anthropic Messages: named events ``message_start``, ``content_block_start``, ``ping``,
  ``content_block_delta``..., ``content_block_stop``, ``message_delta``, ``message_stop``;
  an error in the middle of a stream is ``event: error`` with
  ``{"type": "error", "error": {"type": "overloaded_error", ...}}``.

``open_stream`` is written as a user would write it (``await client.chat.completions.create(
..., stream=True)``) and the chunks are the SDKs' own objects. The cases: a failure before
the first event (an HTTP error answer: the SDK raises when the stream is opened, the next
candidate serves), a failure after three events (the connection cut, or an in-stream error
event: :class:`~model_fallback.StreamInterruptedError`), and stalls (before the first event:
``first_chunk_timeout``, the next candidate serves; between events: ``idle_timeout``). Each
time the server checks that the client closed the response it abandoned, as it does when the
caller leaves the block early (``break``, an error in its loop body, cancellation). A session
turn (``stream_embedded_turn``) streams SDK chunks too, a second writer making it end in a
takeover.

The last test runs the openai example of ``docs/streaming.md`` as written, in a subprocess,
against this server (``OPENAI_BASE_URL``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from model_fallback import (
    Candidate,
    CooldownTracker,
    FailoverReason,
    Outcome,
    SessionTakeoverError,
    StreamInterruptedError,
    stream_with_model_fallback,
)
from model_fallback import events as ev
from model_fallback.session import SessionFile, stream_embedded_turn
from tests.providers._sdks import FAKE_KEY, require
from tests.providers._server import CUT, Answer, ByModel, ProviderServer, Streamed

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
MESSAGES = [{"role": "user", "content": "Say hello"}]

# --- the wire formats ----------------------------------------------------------------------


def openai_chunk(content: str | None, *, role: str | None = None, finish: str | None = None) -> bytes:
    """One ``chat.completion.chunk`` as a ``data:`` line."""
    delta: dict[str, Any] = {}
    if role is not None:
        delta["role"] = role
    if content is not None:
        delta["content"] = content
    chunk = {
        "id": "chatcmpl-loopback",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "gpt-4o-2024-08-06",
        "system_fingerprint": "fp_loopback",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


OPENAI_DONE = b"data: [DONE]\n\n"
# An error in the middle of a stream, as a data line with an "error" object.
OPENAI_ERROR_CHUNK = (
    b'data: {"error": {"message": "The server had an error while processing your request.",'
    b' "type": "server_error", "param": null, "code": null}}\n\n'
)


def openai_events(texts: list[str]) -> tuple[bytes, ...]:
    """One chunk per text (the first also carries the role)."""
    return tuple(openai_chunk(t, role="assistant" if i == 0 else None) for i, t in enumerate(texts))


def openai_stream(texts: list[str]) -> Streamed:
    """A complete chat completions stream."""
    return Streamed((*openai_events(texts), openai_chunk(None, finish="stop"), OPENAI_DONE))


def sse(event: str, data: dict[str, Any]) -> bytes:
    """One named server-sent event (Anthropic's format: the name repeated as ``type``)."""
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def anthropic_head(model: str) -> tuple[bytes, bytes]:
    """``message_start`` and ``content_block_start``."""
    message = {
        "id": "msg_loopback",
        "type": "message",
        "role": "assistant",
        "content": [],
        "model": model,
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 9, "output_tokens": 1},
    }
    return (
        sse("message_start", {"type": "message_start", "message": message}),
        sse(
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        ),
    )


def anthropic_delta(text: str) -> bytes:
    return sse(
        "content_block_delta",
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}},
    )


def anthropic_stream(model: str, texts: list[str]) -> Streamed:
    """A complete Messages stream, with a ``ping`` (which the SDK does not yield)."""
    return Streamed(
        (
            *anthropic_head(model),
            sse("ping", {"type": "ping"}),
            *(anthropic_delta(t) for t in texts),
            sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
            sse(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": len(texts)},
                },
            ),
            sse("message_stop", {"type": "message_stop"}),
        )
    )


ANTHROPIC_OVERLOADED = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}

# --- the SDKs, as a user calls them ------------------------------------------------------------


class Chain:
    """One client per candidate (each at its own base URL), retries off; ``open_stream``
    is what an application writes."""

    def __init__(self, urls: dict[str, str]) -> None:
        self.urls = urls
        self.clients: dict[str, Any] = {}

    async def open_stream(self, c: Candidate) -> Any:
        client = self.clients[str(c)]
        if c.provider == "openai":
            return await client.chat.completions.create(model=c.model, messages=MESSAGES, stream=True)
        return await client.messages.create(model=c.model, max_tokens=64, messages=MESSAGES, stream=True)

    @asynccontextmanager
    async def opened(self) -> AsyncIterator[Chain]:
        for name, url in self.urls.items():
            if name.startswith("openai/"):
                openai = require("openai")
                self.clients[name] = openai.AsyncOpenAI(
                    api_key=FAKE_KEY, base_url=url, max_retries=0, timeout=10
                )
            else:
                anthropic = require("anthropic")
                self.clients[name] = anthropic.AsyncAnthropic(
                    api_key=FAKE_KEY, base_url=url, max_retries=0, timeout=10
                )
        try:
            yield self
        finally:
            for client in self.clients.values():
                await client.close()


def text_of(chunk: Any) -> str:
    """The text a chunk carries (an OpenAI chunk's delta, an Anthropic text delta)."""
    if getattr(chunk, "object", None) == "chat.completion.chunk":
        return "".join(ch.delta.content or "" for ch in chunk.choices)
    if getattr(chunk, "type", None) == "content_block_delta":
        return str(getattr(chunk.delta, "text", ""))
    return ""


class Recorder(ev.Observer):
    def __init__(self) -> None:
        self.ended: list[ev.AttemptEnded] = []
        self.runs: list[ev.RunEnded] = []

    def attempt_ended(self, event: ev.AttemptEnded) -> None:
        self.ended.append(event)

    def run_ended(self, event: ev.RunEnded) -> None:
        self.runs.append(event)


# --- (a) a failure before the first event ------------------------------------------------------


async def test_openai_429_before_the_first_event_falls_back(provider_server: ProviderServer) -> None:
    """The primary answers 429 with Retry-After: the SDK raises RateLimitError when the
    stream is opened; the candidate cools down for 7 s and the next one streams."""
    openai = require("openai")
    body = {
        "error": {
            "message": "Rate limit reached for gpt-4o on requests per min (RPM): Limit 500.",
            "type": "requests",
            "param": None,
            "code": "rate_limit_exceeded",
        }
    }
    urls = {
        "openai/gpt-4o": provider_server.register(
            Answer(429, (("retry-after", "7"),), json.dumps(body).encode()), "stream-429"
        ),
        "openai/gpt-4o-mini": provider_server.register(openai_stream(["Hel", "lo", "!"]), "stream-ok"),
    }
    now = [1000.0]
    cooldowns = CooldownTracker(clock=lambda: now[0])
    rec = Recorder()
    async with (
        Chain(urls).opened() as chain,
        stream_with_model_fallback(
            chain.open_stream, list(urls), cooldowns=cooldowns, observers=[rec]
        ) as stream,
    ):
        chunks = [chunk async for chunk in stream]
    assert all(isinstance(c, openai.types.chat.ChatCompletionChunk) for c in chunks)
    assert "".join(map(text_of, chunks)) == "Hello!"
    assert str(stream.candidate) == "openai/gpt-4o-mini" and stream.chunks == 4
    failed, served = stream.attempts
    assert (failed.outcome, failed.reason) == (Outcome.PROVIDER_FAILURE, FailoverReason.RATE_LIMIT)
    assert isinstance(failed.error, openai.RateLimitError)
    assert served.outcome is Outcome.SUCCESS
    assert cooldowns.remaining(Candidate.parse("openai/gpt-4o")) == pytest.approx(7.0, abs=0.01)
    assert [len(provider_server.requests_for(u)) for u in urls.values()] == [1, 1]  # retries off
    assert json.loads(provider_server.requests_for(urls["openai/gpt-4o-mini"])[0].body)["stream"] is True
    assert provider_server.stream_ends(urls["openai/gpt-4o-mini"]) == ["completed"]
    assert rec.ended[-1].chunks == 4 and rec.ended[-1].time_to_first_chunk_s is not None
    assert rec.runs[-1].outcome is ev.RunOutcome.SUCCESS and rec.runs[-1].fallback_depth == 1


async def test_anthropic_529_before_the_first_event_falls_back_to_openai(
    provider_server: ProviderServer,
) -> None:
    """Anthropic answers 529 overloaded_error: OverloadedError on opening, reason
    overloaded; the chain goes on to an OpenAI model, whose chunks the caller then reads."""
    anthropic = require("anthropic")
    openai = require("openai")
    urls = {
        "anthropic/claude-sonnet-4-5": provider_server.register(
            Answer(529, body=json.dumps(ANTHROPIC_OVERLOADED).encode()), "stream-529"
        ),
        "openai/gpt-4o": provider_server.register(openai_stream(["Hi", " there"]), "stream-ok"),
    }
    cooldowns = CooldownTracker()
    async with (
        Chain(urls).opened() as chain,
        stream_with_model_fallback(chain.open_stream, list(urls), cooldowns=cooldowns) as stream,
    ):
        chunks = [chunk async for chunk in stream]
    assert all(isinstance(c, openai.types.chat.ChatCompletionChunk) for c in chunks)
    assert "".join(map(text_of, chunks)) == "Hi there"
    failed = stream.attempts[0]
    assert failed.reason is FailoverReason.OVERLOADED and isinstance(failed.error, anthropic.OverloadedError)
    assert cooldowns.is_cooling(Candidate.parse("anthropic/claude-sonnet-4-5"))
    assert provider_server.stream_ends(urls["openai/gpt-4o"]) == ["completed"]


async def test_anthropic_stream_succeeds_with_its_own_events(provider_server: ProviderServer) -> None:
    """A whole Messages stream: the SDK's event objects come through unchanged (the ping
    is the SDK's to drop), from message_start to message_stop."""
    anthropic = require("anthropic")
    url = provider_server.register(anthropic_stream("claude-sonnet-4-5", ["Hel", "lo"]), "stream-ok")
    async with (
        Chain({"anthropic/claude-sonnet-4-5": url}).opened() as chain,
        stream_with_model_fallback(chain.open_stream, ["anthropic/claude-sonnet-4-5"]) as stream,
    ):
        events = [e async for e in stream]
    assert [e.type for e in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert isinstance(events[0], anthropic.types.RawMessageStartEvent)
    assert "".join(map(text_of, events)) == "Hello" and stream.chunks == 7
    assert provider_server.stream_ends(url) == ["completed"]


# --- (b) a failure after three events -------------------------------------------------------


def _interrupted_cases() -> Iterator[Any]:
    head = anthropic_head("claude-sonnet-4-5")
    yield pytest.param(
        "openai/gpt-4o",
        Streamed((*openai_events(["a", "b", "c"]), CUT)),
        FailoverReason.TIMEOUT,  # a dropped connection is a transport failure
        "openai.APIConnectionError",
        "cut",
        id="openai-connection-cut",
    )
    yield pytest.param(
        "openai/gpt-4o",
        Streamed(
            (
                *openai_events(["a", "b", "c"]),
                OPENAI_ERROR_CHUNK,
            )
        ),
        FailoverReason.SERVER_ERROR,
        "openai.APIError",
        "completed",
        id="openai-error-chunk",
    )
    yield pytest.param(
        "anthropic/claude-sonnet-4-5",
        Streamed((*head, anthropic_delta("a"), sse("error", ANTHROPIC_OVERLOADED))),
        FailoverReason.OVERLOADED,
        "anthropic.APIStatusError",
        "completed",
        id="anthropic-overloaded-error-event",
    )
    yield pytest.param(
        "anthropic/claude-sonnet-4-5",
        Streamed((*head, anthropic_delta("a"), CUT)),
        FailoverReason.TIMEOUT,
        # the anthropic SDK lets its HTTP client's error through from a stream being read
        "httpx2.RemoteProtocolError",
        "cut",
        id="anthropic-connection-cut",
    )


@pytest.mark.parametrize(("candidate", "answer", "reason", "cause", "server_end"), list(_interrupted_cases()))
async def test_a_failure_after_three_events_is_an_interruption(
    provider_server: ProviderServer,
    candidate: str,
    answer: Streamed,
    reason: FailoverReason,
    cause: str,
    server_end: str,
) -> None:
    """Three events delivered, then the stream fails: StreamInterruptedError with the
    candidate, the reason, chunks_delivered == 3 and the SDK's exception as __cause__;
    the next candidate is never called (no silent switch)."""
    require(candidate.split("/")[0])
    fallback = "openai/gpt-4o-mini"
    urls = {
        candidate: provider_server.register(answer, "stream-interrupted"),
        fallback: provider_server.register(openai_stream(["never"]), "stream-fallback"),
    }
    cooldowns = CooldownTracker()
    rec = Recorder()
    got: list[Any] = []
    async with Chain(urls).opened() as chain:
        with anyio.fail_after(10), pytest.raises(StreamInterruptedError) as info:
            async with stream_with_model_fallback(
                chain.open_stream, list(urls), cooldowns=cooldowns, observers=[rec], idle_timeout=5
            ) as stream:
                async for chunk in stream:
                    got.append(chunk)
    err = info.value
    assert len(got) == 3 and err.chunks_delivered == 3 and stream.chunks == 3
    assert err.candidate == Candidate.parse(candidate) and err.reason is reason
    original = err.__cause__
    assert original is not None
    assert f"{type(original).__module__.split('.')[0]}.{type(original).__name__}" == cause
    assert stream.attempts[-1].error is original
    assert provider_server.requests_for(urls[fallback]) == []
    assert provider_server.stream_ends(urls[candidate]) == [server_end]
    assert cooldowns.is_cooling(Candidate.parse(candidate)) is (reason is FailoverReason.OVERLOADED)
    assert rec.ended[-1].interrupted and rec.runs[-1].outcome is ev.RunOutcome.INTERRUPTED


# --- (c) stalls ---------------------------------------------------------------------------


@pytest.mark.parametrize("candidate", ["openai/gpt-4o", "anthropic/claude-sonnet-4-5"])
async def test_a_stall_between_events_is_an_idle_timeout(
    provider_server: ProviderServer, candidate: str
) -> None:
    """Three events, then nothing for 30 s: after idle_timeout the stream is interrupted
    (reason timeout, three chunks delivered) and the response is closed: the server sees
    the client go away instead of writing into the void for 30 s."""
    require(candidate.split("/")[0])
    if candidate.startswith("openai/"):
        steps: tuple[Any, ...] = (*openai_events(["a", "b", "c"]), 30.0, *openai_events(["d"]), OPENAI_DONE)
    else:
        head = anthropic_head("claude-sonnet-4-5")
        steps = (*head, anthropic_delta("a"), 30.0, anthropic_delta("b"))
    url = provider_server.register(Streamed(steps), "stream-stall")
    started = time.monotonic()
    async with Chain({candidate: url}).opened() as chain:
        with anyio.fail_after(10), pytest.raises(StreamInterruptedError) as info:
            async with stream_with_model_fallback(chain.open_stream, [candidate], idle_timeout=0.4) as stream:
                async for _ in stream:
                    pass
        assert provider_server.stream_ends(url, timeout=5) == ["client_disconnected"]
    assert time.monotonic() - started < 8
    err = info.value
    assert err.reason is FailoverReason.TIMEOUT and err.chunks_delivered == 3
    assert isinstance(err.__cause__, TimeoutError)
    assert stream.attempts[-1].outcome is Outcome.PROVIDER_FAILURE


async def test_a_stall_before_the_first_event_falls_back(provider_server: ProviderServer) -> None:
    """Headers sent, then nothing: past first_chunk_timeout the attempt is a provider
    timeout, its response is closed (the server sees it), and the next candidate serves."""
    urls = {
        "openai/gpt-4o": provider_server.register(Streamed((30.0, *openai_events(["late"]))), "stream-slow"),
        "anthropic/claude-sonnet-4-5": provider_server.register(
            anthropic_stream("claude-sonnet-4-5", ["fast"]), "stream-ok"
        ),
    }
    require("openai")
    async with Chain(urls).opened() as chain:
        with anyio.fail_after(10):
            async with stream_with_model_fallback(
                chain.open_stream, list(urls), first_chunk_timeout=0.5
            ) as stream:
                text = "".join([text_of(e) async for e in stream])
        assert provider_server.stream_ends(urls["openai/gpt-4o"], timeout=5) == ["client_disconnected"]
    assert text == "fast"
    assert stream.attempts[0].reason is FailoverReason.TIMEOUT
    assert str(stream.candidate) == "anthropic/claude-sonnet-4-5"


@pytest.mark.parametrize("how", ["break", "body_error", "cancel"])
@pytest.mark.parametrize("candidate", ["openai/gpt-4o", "anthropic/claude-sonnet-4-5"])
async def test_leaving_the_block_early_closes_the_response(
    provider_server: ProviderServer, candidate: str, how: str
) -> None:
    """A break, an error in the loop body, or a cancellation while the provider is quiet:
    the SDK's response is closed at once (the server sees the client go away); the first
    two count as served, the cancellation as cancelled, and nothing cools down."""
    require(candidate.split("/")[0])
    if candidate.startswith("openai/"):
        steps: tuple[Any, ...] = (*openai_events(["a", "b"]), 30.0, OPENAI_DONE)
    else:
        steps = (*anthropic_head("claude-sonnet-4-5"), 30.0, anthropic_delta("late"))
    url = provider_server.register(Streamed(steps), f"stream-{how}")
    rec = Recorder()
    cooldowns = CooldownTracker()
    async with Chain({candidate: url}).opened() as chain:

        async def consume() -> None:
            async with stream_with_model_fallback(
                chain.open_stream, [candidate], observers=[rec], cooldowns=cooldowns
            ) as stream:
                async for _ in stream:
                    if how == "break":
                        break
                    if how == "body_error":
                        raise LookupError("the caller's own processing failed")

        with anyio.fail_after(10):
            if how == "cancel":
                with anyio.move_on_after(0.4):
                    await consume()
            elif how == "body_error":
                with pytest.raises(LookupError):
                    await consume()
            else:
                await consume()
        assert provider_server.stream_ends(url, timeout=5) == ["client_disconnected"]
    expected = ev.RunOutcome.CANCELLED if how == "cancel" else ev.RunOutcome.SUCCESS
    assert rec.runs[-1].outcome is expected
    assert not cooldowns.is_cooling(Candidate.parse(candidate))


# --- a session turn over a real SDK stream -----------------------------------------------------


@pytest.mark.parametrize("takeover", [False, True], ids=["served", "takeover"])
async def test_a_session_turn_streams_sdk_chunks(
    provider_server: ProviderServer, tmp_path: Path, takeover: bool
) -> None:
    """stream_embedded_turn over the openai client: the reply entry is built from the SDK's
    chunks; a second writer appending while the chunks arrive makes the end of the stream
    raise SessionTakeoverError, after every chunk, with no reply appended."""
    require("openai")
    url = provider_server.register(openai_stream(["Hel", "lo"]), "stream-session")
    path = tmp_path / "s.jsonl"
    user = {"role": "user", "content": "Say hello"}

    def reply(chunks: list[Any]) -> dict[str, Any]:
        return {"role": "assistant", "content": "".join(map(text_of, chunks))}

    got: list[str] = []

    async def turn(chain: Chain) -> None:
        async with stream_embedded_turn(
            SessionFile(path, lock_timeout=5), user, chain.open_stream, ["openai/gpt-4o"], reply_entry=reply
        ) as stream:
            async for chunk in stream:
                got.append(text_of(chunk))
                if takeover and len(got) == 1:
                    await SessionFile(path, lock_timeout=5).append({"role": "system", "content": "compacted"})

    async with Chain({"openai/gpt-4o": url}).opened() as chain:
        if takeover:
            with pytest.raises(SessionTakeoverError):
                await turn(chain)
        else:
            await turn(chain)
    assert "".join(got) == "Hello"
    entries = await SessionFile(path).read()
    if takeover:
        assert entries == [user, {"role": "system", "content": "compacted"}]
    else:
        assert entries == [user, {"role": "assistant", "content": "Hello"}]
    assert provider_server.stream_ends(url) == ["completed"]


# --- the documented example runs as written -------------------------------------------------

EXAMPLE_MARKER = "<!-- runnable example: tests/providers/test_sdk_streaming.py -->"


def documented_example() -> str:
    """The python block that follows the marker in docs/streaming.md."""
    text = (ROOT / "docs" / "streaming.md").read_text(encoding="utf-8")
    after = text.split(EXAMPLE_MARKER, 1)
    assert len(after) == 2, "docs/streaming.md lost the runnable example's marker"
    match = re.search(r"```python\n(.*?)```", after[1], re.DOTALL)
    assert match is not None
    return match.group(1)


def _run_example(
    server: ProviderServer, answers: dict[str, Answer | Streamed]
) -> subprocess.CompletedProcess[str]:
    url = server.register(ByModel(answers), "docs-example")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "OTEL_"))}
    env.update(OPENAI_BASE_URL=url, OPENAI_API_KEY=FAKE_KEY)
    return subprocess.run(
        [sys.executable, "-c", documented_example()],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=ROOT,
    )


def test_the_documented_openai_example_runs_as_written(provider_server: ProviderServer) -> None:
    """docs/streaming.md's example, unchanged, against the loopback server: gpt-4o is rate
    limited, gpt-4o-mini streams; then gpt-4o-mini is cut after three chunks."""
    require("openai")
    rate_limited = Answer(
        429,
        (("retry-after", "20"),),
        b'{"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}}',
    )
    proc = _run_example(
        provider_server, {"gpt-4o": rate_limited, "gpt-4o-mini": openai_stream(["Hello", ",", " world"])}
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "Hello, world",
        "served by openai/gpt-4o-mini after 1 fallback(s)",
        "  openai/gpt-4o: rate_limit",
    ]

    proc = _run_example(
        provider_server,
        {"gpt-4o": rate_limited, "gpt-4o-mini": Streamed((*openai_events(["Hel", "lo", ","]), CUT))},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "Hello,",
        "interrupted after 3 chunk(s) from openai/gpt-4o-mini (timeout)",
    ]
