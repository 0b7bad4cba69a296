"""Every code block of the README and of docs/ runs, and every link in them resolves.

* Each ```python block of README.md and docs/*.md is a program: it is written to a file and
  run in a fresh interpreter (with a timeout), in an empty temporary directory, against a
  loopback fake provider. The fake speaks the OpenAI chat completions API
  (``POST /v1/chat/completions``, JSON or SSE chunks when ``"stream": true``) and the
  Anthropic messages API (``POST /v1/messages``, JSON or SSE events); a model whose name
  contains ``busy`` answers 429 with ``Retry-After: 1``. The real ``openai`` and
  ``anthropic`` SDKs find it through ``OPENAI_BASE_URL`` / ``ANTHROPIC_BASE_URL`` and take the
  fake keys ``OPENAI_API_KEY=sk-test`` / ``ANTHROPIC_API_KEY=sk-ant-test``, so the examples
  are written as a user writes them. A block that is not a program (an API signature, an
  excerpt) is fenced as ``text``.
* Each ```bash / ```sh block names programs that exist: a ``scripts/...`` path of the
  repository, ``model-fallback <subcommand>`` whose ``--help`` exits 0 and lists every
  ``--option`` the block uses, a ``benchmarks/`` file, ``python -m <module>`` importable, or
  one of the external tools the docs name on purpose (pip, prometheus, docker, ...).
* Every relative link ``](path#anchor)`` points at an existing file, and its anchor at a
  heading of that file (GitHub's anchors).
* README.md stays under 15 000 bytes.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shlex
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TIMEOUT_S = 90

FENCE = re.compile(
    r"^(?P<indent>[ \t]*)```(?P<lang>[^\s`]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.M | re.S
)


def blocks(lang: set[str]) -> Iterator[Any]:
    for doc in DOCS:
        text = doc.read_text()
        for m in FENCE.finditer(text):
            if m.group("lang") in lang:
                line = text.count("\n", 0, m.start()) + 1
                body = "\n".join(x.removeprefix(m.group("indent")) for x in m.group("body").splitlines())
                yield pytest.param(body, id=f"{doc.relative_to(ROOT)}:{line}")


# --- the loopback fake provider -----------------------------------------------------------


def _sse(events: list[tuple[str | None, dict[str, Any] | str]]) -> bytes:
    out = []
    for name, data in events:
        payload = data if isinstance(data, str) else json.dumps(data)
        out.append((f"event: {name}\n" if name else "") + f"data: {payload}\n\n")
    return "".join(out).encode()


def _reply_words(model: str) -> list[str]:
    return ["Hello", " from ", model, "."]


class FakeProvider(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, doc: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(doc).encode(), "application/json", headers)

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        try:
            req = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            req = {}
        model = str(req.get("model", ""))
        stream = bool(req.get("stream"))
        path = self.path.split("?", 1)[0]
        if path.endswith("/chat/completions"):
            self._openai(model, stream)
        elif path.endswith("/messages"):
            self._anthropic(model, stream)
        else:
            self._json(404, {"error": {"message": f"no route {path}", "type": "invalid_request_error"}})

    def _openai(self, model: str, stream: bool) -> None:
        if "busy" in model:
            self._json(
                429,
                {"error": {"message": f"Rate limit reached for {model}", "type": "requests",
                           "code": "rate_limit_exceeded", "param": None}},
                {"retry-after": "1"},
            )  # fmt: skip
            return
        created = int(time.time())
        if not stream:
            self._json(200, {
                "id": "chatcmpl-test", "object": "chat.completion", "created": created, "model": model,
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": "".join(_reply_words(model))}}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9},
            })  # fmt: skip
            return
        chunk = {"id": "chatcmpl-test", "object": "chat.completion.chunk", "created": created, "model": model}
        events: list[tuple[str | None, dict[str, Any] | str]] = [
            (None, {**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
        ]
        events += [
            (None, {**chunk, "choices": [{"index": 0, "delta": {"content": w}}]}) for w in _reply_words(model)
        ]
        events.append((None, {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
        events.append((None, "[DONE]"))
        self._send(200, _sse(events), "text/event-stream")

    def _anthropic(self, model: str, stream: bool) -> None:
        if "busy" in model:
            self._json(
                429,
                {
                    "type": "error",
                    "error": {"type": "rate_limit_error", "message": f"Rate limit reached for {model}"},
                },
                {"retry-after": "1"},
            )
            return
        usage = {"input_tokens": 5, "output_tokens": 4}
        message = {"id": "msg_test", "type": "message", "role": "assistant", "model": model,
                   "stop_reason": "end_turn", "stop_sequence": None, "usage": usage}  # fmt: skip
        if not stream:
            self._json(200, {**message, "content": [{"type": "text", "text": "".join(_reply_words(model))}]})
            return
        events: list[tuple[str | None, dict[str, Any] | str]] = [
            ("message_start", {"type": "message_start",
                               "message": {**message, "content": [], "stop_reason": None}}),
            ("content_block_start", {"type": "content_block_start", "index": 0,
                                     "content_block": {"type": "text", "text": ""}}),
        ]  # fmt: skip
        events += [
            ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                     "delta": {"type": "text_delta", "text": w}})
            for w in _reply_words(model)
        ]  # fmt: skip
        events += [
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                               "usage": {"output_tokens": 4}}),
            ("message_stop", {"type": "message_stop"}),
        ]  # fmt: skip
        self._send(200, _sse(events), "text/event-stream")


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


@pytest.fixture(scope="module")
def provider_url() -> Iterator[str]:
    server = _Server(("127.0.0.1", 0), FakeProvider)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _env(provider_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "OPENAI_", "ANTHROPIC_"))}
    env.update(
        OPENAI_BASE_URL=f"{provider_url}/v1",
        OPENAI_API_KEY="sk-test",
        ANTHROPIC_BASE_URL=provider_url,
        ANTHROPIC_API_KEY="sk-ant-test",
        PYTHONUNBUFFERED="1",
        METRICS_PORT=str(_free_port()),  # where an example serves /metrics
    )
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- python blocks ---------------------------------------------------------------------


@pytest.mark.parametrize("code", list(blocks({"python", "py"})))
def test_python_block_runs(code: str, provider_url: str, tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(code)
    try:
        proc = subprocess.run(
            [sys.executable, str(script)], cwd=tmp_path, env=_env(provider_url),
            capture_output=True, text=True, timeout=TIMEOUT_S,
        )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        pytest.fail(
            f"the example did not end within {TIMEOUT_S} s; output so far: {exc.stdout!r} {exc.stderr!r}"
        )
    print(proc.stdout)
    assert proc.returncode == 0, (
        f"exit {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    )


def test_the_fake_provider_answers_like_the_real_apis(provider_url: str, tmp_path: Path) -> None:
    """The fake is what the examples rely on: both SDKs, plain and streamed, and the 429."""
    code = """
import anyio, openai, anthropic
from openai import AsyncOpenAI
from anthropic import AsyncAnthropic

async def main():
    oa, an = AsyncOpenAI(max_retries=0), AsyncAnthropic(max_retries=0)
    r = await oa.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert r.choices[0].message.content == "Hello from gpt-4o.", r
    s = await oa.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True)
    assert "".join([c.choices[0].delta.content or "" async for c in s if c.choices]) == "Hello from gpt-4o."
    m = await an.messages.create(model="claude-sonnet-4-5", max_tokens=64, messages=[{"role": "user", "content": "hi"}])
    assert m.content[0].text == "Hello from claude-sonnet-4-5."
    async with an.messages.stream(model="claude-sonnet-4-5", max_tokens=64,
                                  messages=[{"role": "user", "content": "hi"}]) as st:
        assert "".join([t async for t in st.text_stream]) == "Hello from claude-sonnet-4-5."
    for call in (lambda: oa.chat.completions.create(model="gpt-4o-busy", messages=[]),
                 lambda: an.messages.create(model="busy", max_tokens=1, messages=[])):
        try:
            await call()
        except (openai.RateLimitError, anthropic.RateLimitError) as e:
            assert e.response.headers["retry-after"] == "1"
        else:
            raise AssertionError("no 429")
    print("ok")

anyio.run(main)
"""
    script = tmp_path / "fake.py"
    script.write_text(code)
    proc = subprocess.run([sys.executable, str(script)], env=_env(provider_url), capture_output=True, text=True,
                          timeout=TIMEOUT_S)  # fmt: skip
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


# --- shell blocks -----------------------------------------------------------------------

# Programs the docs name on purpose that the repository does not provide (installed by the
# reader, or only in production); everything else must be the repository's own.
EXTERNAL = {
    "pip", "prometheus", "promtool", "docker", "otelcol-contrib", "go", "git", "curl", "cd",
    "sudo", "apt-get", "export", "kill", "wait", "python3", "uv",
}  # fmt: skip
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_SUBCOMMANDS: dict[str, str] = {}


def _help(args: list[str]) -> str:
    key = " ".join(args)
    if key not in _SUBCOMMANDS:
        exe = Path(sys.executable).with_name("model-fallback")
        proc = subprocess.run([str(exe), *args, "--help"], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, f"`model-fallback {key} --help` exited {proc.returncode}: {proc.stderr}"
        _SUBCOMMANDS[key] = proc.stdout
    return _SUBCOMMANDS[key]


def commands(block: str) -> Iterator[list[str]]:
    """The simple commands of a shell block (continuations joined, comments dropped)."""
    text = re.sub(r"\\\n", " ", block)
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            words = shlex.split(line, comments=True)
        except ValueError as exc:
            raise AssertionError(f"unparsable shell line {line!r}: {exc}") from None
        cmd: list[str] = []
        for w in [*words, ";"]:
            if w in {"&&", "||", "|", ";", "&"} or w.endswith(";"):
                if w.endswith(";") and w != ";":
                    cmd.append(w[:-1])
                while cmd and _ASSIGNMENT.match(cmd[0]):
                    cmd.pop(0)
                if cmd:
                    yield cmd
                cmd = []
            else:
                cmd.append(w.rstrip("&") if w.endswith("&") and w != "&" else w)


def check_command(cmd: list[str]) -> None:
    prog = cmd[0]
    if prog.startswith(("$", "'$")) or "$(" in prog:
        return  # a variable holding a path the block made itself
    if prog.startswith(("scripts/", "./scripts/")):
        path = ROOT / prog.removeprefix("./")
        assert path.is_file() and os.access(path, os.X_OK), (
            f"{prog} is not an executable file of the repository"
        )
        return
    if prog in {"model-fallback", "python", ".venv/bin/python", ".venv/bin/model-fallback"} or prog.endswith(
        "/model-fallback"
    ):
        args = cmd[1:]
        if prog.endswith("python"):
            if args[:1] == ["-m"]:
                module = args[1]
                proc = subprocess.run(
                    [sys.executable, "-c", f"import {module}"], capture_output=True, timeout=60
                )
                assert proc.returncode == 0, f"python -m {module}: no such module"
                if module not in {"model_fallback", "model_fallback.ops", "model_fallback.dashboards"}:
                    return
                args = ["dashboards", *args[2:]] if module != "model_fallback" else args[2:]
            else:
                script = next((a for a in args if not a.startswith("-")), None)
                assert script is not None and (ROOT / script).is_file(), f"python {script}: no such file"
                return
        sub = [a for a in args[:1] if not a.startswith("-")]
        helptext = _help(sub)
        for opt in args[1:] if sub else args:
            if opt.startswith("--"):
                name = opt.split("=", 1)[0]
                assert name in helptext, f"`model-fallback {' '.join(sub)}` has no option {name}"
        return
    if prog.startswith(".venv/bin/"):  # a tool scripts/setup installs into the virtualenv
        assert Path(sys.executable).with_name(prog.removeprefix(".venv/bin/")).exists(), f"no {prog}"
        return
    assert prog in EXTERNAL, f"unknown program {prog!r} (not in the repository nor a known external tool)"


@pytest.mark.parametrize("block", list(blocks({"bash", "sh", "shell"})))
def test_shell_block_names_existing_programs(block: str) -> None:
    cmds = list(commands(block))
    assert cmds, "an empty shell block"
    for cmd in cmds:
        check_command(cmd)


# --- links and size ---------------------------------------------------------------------

_LINK = re.compile(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _prose(text: str) -> str:
    """The text outside fenced blocks and inline code."""
    text = FENCE.sub("", text)
    return re.sub(r"`[^`\n]*`", "", text)


def anchors(path: Path) -> set[str]:
    """GitHub's heading anchors of a markdown file."""
    seen: dict[str, int] = {}
    out: set[str] = set()
    for m in re.finditer(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", FENCE.sub("", path.read_text()), re.M):
        heading = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", m.group(1))
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: str(d.relative_to(ROOT)))
def test_every_relative_link_resolves(doc: Path) -> None:
    broken = []
    for target in _LINK.findall(_prose(doc.read_text())):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):
            continue  # http(s):, mailto:
        file_part, _, anchor = target.partition("#")
        dest = (doc.parent / file_part).resolve() if file_part else doc
        if not dest.exists():
            broken.append(
                f"{target}: no file {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest}"
            )
            continue
        if anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading #{anchor} in {dest.relative_to(ROOT)}")
    assert not broken, "\n".join(broken)


def test_readme_fits_on_a_few_screens() -> None:
    size = len((ROOT / "README.md").read_bytes())
    assert size < 15_000, f"README.md is {size} bytes; move detail into docs/"
