"""Redaction of secrets in every text that leaves the library.

A corpus of real credential *formats* (values generated here, deterministically, in each
vendor's published shape) is embedded in the carriers secrets really travel in — an SDK's
error message, a JSON body, the repr of a dict, a URL, a header line — and none of it may
survive :func:`redact`: neither the secret nor any 8-character piece of it. Innocent text
(model names, request ids, timestamps, prose) must come through intact. Then the places a
message leaves the library: span status descriptions, log records of a failing observer,
``str(AllCandidatesFailedError)``, the Prometheus exposition — each redacts *before* it cuts.
"""

from __future__ import annotations

import base64
import json
import logging
import random
import string
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

import model_fallback as mf
from model_fallback import events as ev
from model_fallback._redact import REDACTED, redact
from model_fallback.otel import OTelObserver
from model_fallback.prometheus import PrometheusObserver

_rng = random.Random(20261127)
ALNUM = string.ascii_letters + string.digits
B64 = ALNUM + "+/"
B64URL = ALNUM + "-_"
HEX = "0123456789abcdef"
UPPER_ALNUM = string.ascii_uppercase + string.digits


def rand(alphabet: str, n: int) -> str:
    """*n* random characters of *alphabet*, with at least one digit when it has digits
    (a fixed seed: the corpus is the same on every run)."""
    while True:
        s = "".join(_rng.choice(alphabet) for _ in range(n))
        if not any(c.isdigit() for c in alphabet) or any(c.isdigit() for c in s):
            return s


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwt() -> str:
    header = b64url(json.dumps({"alg": "RS256", "typ": "JWT", "kid": rand(HEX, 16)}).encode())
    payload = b64url(
        json.dumps(
            {"sub": "svc-account@example.iam", "aud": "https://api.example.com", "exp": 1893456000}
        ).encode()
    )
    return f"{header}.{payload}.{rand(B64URL, 86)}"


def _pem_body() -> str:
    # A PKCS#8 RSA key body: base64 lines of 64 characters, as in a GCP service-account JSON.
    raw = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQ" + rand(B64, 1550)
    return "\n".join(raw[i : i + 64] for i in range(0, len(raw), 64))


@dataclass(frozen=True)
class Secret:
    """One credential format: *secret* is what must not leak; *material* is how it appears
    in text (the secret itself, or e.g. a whole URL or PEM block around it)."""

    name: str
    secret: str
    material: str = ""
    # Recognised by its shape alone (True), or only next to a name such as password= (False).
    shaped: bool = True

    @property
    def text(self) -> str:
        return self.material or self.secret


_PEM = _pem_body()
_PASSWORD = "Tr0ub4dor&3-horse"
_URL_PASSWORD = "n0t-" + rand(ALNUM, 14)
_SLACK_HOOK = rand(ALNUM, 24)
_BASIC = base64.b64encode(f"deploy:{_URL_PASSWORD}".encode()).decode()

CORPUS: list[Secret] = [
    Secret("openai project key", "sk-proj-" + rand(B64URL, 156)),
    Secret("openai legacy key", "sk-" + rand(ALNUM, 20) + "T3BlbkFJ" + rand(ALNUM, 20)),
    Secret("openai service-account key", "sk-svcacct-" + rand(B64URL, 120)),
    Secret("openai admin key", "sk-admin-" + rand(B64URL, 120)),
    Secret("anthropic api key", "sk-ant-api03-" + rand(B64URL, 93) + "AA"),
    Secret("anthropic admin key", "sk-ant-admin01-" + rand(B64URL, 93) + "AA"),
    Secret("google api key (gemini)", "AIza" + rand(B64URL, 35)),
    Secret("google oauth access token", "ya29." + rand(B64URL, 150)),
    Secret("google oauth client secret", "GOCSPX-" + rand(B64URL, 28)),
    Secret("xai api key", "xai-" + rand(ALNUM, 80)),
    Secret("groq api key", "gsk_" + rand(ALNUM, 52)),
    Secret("mistral api key (32 alnum)", rand(ALNUM, 32)),
    Secret("cohere api key (40 alnum)", rand(ALNUM, 40)),
    Secret("huggingface token", "hf_" + rand(string.ascii_letters, 34)),
    Secret("perplexity api key", "pplx-" + rand(ALNUM, 48)),
    Secret("deepseek api key", "sk-" + rand(HEX, 32)),
    Secret("moonshot api key", "sk-" + rand(ALNUM, 48)),
    Secret("openrouter api key", "sk-or-v1-" + rand(HEX, 64)),
    Secret("together api key (64 hex)", rand(HEX, 64)),
    Secret("replicate token", "r8_" + rand(ALNUM, 37)),
    Secret("zhipu glm api key", rand(HEX, 32) + "." + rand(ALNUM, 16)),
    Secret("github classic pat", "ghp_" + rand(ALNUM, 36)),
    Secret("github oauth token", "gho_" + rand(ALNUM, 36)),
    Secret("github app token", "ghs_" + rand(ALNUM, 36)),
    Secret("github fine-grained pat", "github_pat_" + rand(ALNUM, 22) + "_" + rand(ALNUM, 59)),
    Secret("gitlab pat", "glpat-" + rand(B64URL, 20)),
    Secret("slack bot token", f"xoxb-{rand(string.digits, 12)}-{rand(string.digits, 13)}-{rand(ALNUM, 24)}"),
    Secret("slack user token", f"xoxp-{rand(string.digits, 12)}-{rand(string.digits, 12)}-{rand(HEX, 32)}"),
    Secret(
        "slack webhook url",
        _SLACK_HOOK,
        f"https://hooks.slack.com/services/T{rand(UPPER_ALNUM, 8)}/B{rand(UPPER_ALNUM, 10)}/{_SLACK_HOOK}",
    ),
    Secret("stripe live secret key", "sk_live_" + rand(ALNUM, 99)),
    Secret("stripe restricted key", "rk_live_" + rand(ALNUM, 24)),
    Secret("stripe webhook secret", "whsec_" + rand(ALNUM, 32)),
    Secret("aws access key id", "AKIA" + rand(UPPER_ALNUM, 16)),
    Secret("aws temporary access key id", "ASIA" + rand(UPPER_ALNUM, 16)),
    Secret("aws secret access key", rand(B64, 40)),
    Secret("aws session token", "IQoJb3JpZ2luX2VjE" + rand(B64, 300)),
    Secret("azure openai key (32 hex)", rand(HEX, 32)),
    Secret("azure ai services key (84 alnum)", rand(ALNUM, 84)),
    Secret("azure storage account key", rand(B64, 86) + "=="),
    Secret(
        "gcp service-account private key",
        _PEM,
        f"-----BEGIN PRIVATE KEY-----\n{_PEM}\n-----END PRIVATE KEY-----\n",
    ),
    Secret("twilio api key sid", "SK" + rand(HEX, 32)),
    Secret("twilio auth token", rand(HEX, 32)),
    Secret("sendgrid api key", "SG." + rand(B64URL, 22) + "." + rand(B64URL, 43)),
    Secret("mailgun api key", "key-" + rand(HEX, 32)),
    Secret("npm token", "npm_" + rand(ALNUM, 36)),
    Secret("pypi token", "pypi-AgEIcHlwaS5vcmc" + rand(B64URL, 150)),
    Secret("databricks token", "dapi" + rand(HEX, 32)),
    Secret("digitalocean token", "dop_v1_" + rand(HEX, 64)),
    Secret("shopify access token", "shpat_" + rand(HEX, 32)),
    Secret("telegram bot token", f"{rand(string.digits, 10)}:AA{rand(B64URL, 33)}"),
    Secret("jwt", _jwt()),
    Secret("opaque bearer token", rand(B64URL, 43), "Bearer " + "{secret}"),
    Secret("basic credentials", _BASIC, "Basic " + _BASIC),
    Secret(
        "password in a url", _URL_PASSWORD, f"https://deploy:{_URL_PASSWORD}@git.example.com/acme/app.git"
    ),
    Secret("password field", _PASSWORD, shaped=False),
]

# Carriers: (name, template). {s} is the material; a carrier JSON-encodes where JSON would.
SHAPED_CARRIERS: list[tuple[str, Any]] = [
    (
        "sdk error",
        lambda s: (
            f"openai.AuthenticationError: Error code: 401 - Incorrect API key provided: {s}. "
            "You can find your API key at https://platform.openai.com/account/api-keys."
        ),
    ),
    ("sdk repr", lambda s: f"APIStatusError(status_code=403, message='credential {s} is not allowed')"),
    (
        "json body",
        lambda s: json.dumps({"error": {"code": 401, "message": f"The credential {s} is not valid."}}),
    ),
    ("json field", lambda s: json.dumps({"model": "gpt-4o", "api_key": s})),
    ("dict repr", lambda s: str({"api_key": s, "model": "gpt-4o", "timeout": 30})),
    (
        "nested dict repr",
        lambda s: str({"error": {"message": f"Incorrect API key provided: {s}", "type": "auth"}}),
    ),
    ("url query", lambda s: f"GET https://api.example.com/v1/models?key={s}&alt=json returned 400"),
    ("header line", lambda s: f"request headers: x-api-key: {s}\r\nuser-agent: sdk/1.0"),
    ("authorization header", lambda s: f"Authorization: Bearer {s}"),
    ("bare", lambda s: f"upstream rejected {s} (401)"),
]
CONTEXT_CARRIERS: list[tuple[str, Any]] = [
    ("kwarg repr", lambda s: f"connect(host='db', user='svc', password='{s}') failed"),
    ("dict repr", lambda s: str({"user": "svc", "password": s})),
    ("json", lambda s: json.dumps({"user": "svc", "password": s})),
    ("url", lambda s: f"could not connect to postgresql://svc:{s}@db.internal:5432/app"),
    ("env line", lambda s: f"PGPASSWORD={s} psql -h db"),
    ("header", lambda s: f"X-Api-Key: {s}"),
]


def leaked_piece(secret: str, out: str) -> str | None:
    """The first 8-character piece of *secret* (line by line) found in *out*."""
    for line in secret.splitlines():
        for i in range(len(line) - 7):
            if line[i : i + 8] in out:
                return line[i : i + 8]
    return None


def cases() -> Iterator[Any]:
    for sec in CORPUS:
        for carrier, make in SHAPED_CARRIERS if sec.shaped else CONTEXT_CARRIERS:
            yield pytest.param(sec, make, id=f"{sec.name}-{carrier}")


def test_the_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 30
    assert len({s.secret for s in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize(("sec", "make"), list(cases()))
def test_no_piece_of_a_secret_survives(sec: Secret, make: Any) -> None:
    material = sec.text.replace("{secret}", sec.secret)
    text = make(material)
    out = redact(text, limit=100_000)
    assert REDACTED in out, out
    piece = leaked_piece(sec.secret, out)
    assert piece is None, f"{piece!r} of {sec.name} survived in {out!r}"


@pytest.mark.parametrize(
    "text",
    [
        "model gpt-4.1-mini-2025-04-14 is not available in your region",
        "anthropic/claude-sonnet-4-20250514 returned 529 overloaded_error",
        "us.anthropic.claude-3-7-sonnet-20250219-v1:0 throttled by bedrock",
        "google/gemini-2.5-pro-preview-06-05: RESOURCE_EXHAUSTED",
        "request_id=req_011CSHoEeqs5C35K2UUqR7Fy at 2025-04-14T12:34:56.789Z",
        "x-request-id: req_5f3c2a1b9e8d7c6b5a4f3e2d1c0b9a8f (retry after 2025-11-27T08:00:00+00:00)",
        (
            "Rate limit reached for gpt-4o in organization org-abc123 on tokens per min (TPM): "
            "Limit 30000, Used 29000, Requested 2000. Please try again in 2s."
        ),
        '{"usage": {"prompt_tokens": 812, "completion_tokens": 96, "max_tokens": 4096}}',
        "This model's maximum context length is 128000 tokens; your messages resulted in 131072.",
        "The model is overloaded. Please try again later.",
        "File /usr/lib/python3.11/site-packages/httpx/_transports/default.py, line 69, in map_httpcore_exceptions",
        "Bearer authentication is required for this endpoint",
        "see https://platform.openai.com/docs/guides/error-codes/api-errors for details",
    ],
)
def test_innocent_text_survives(text: str) -> None:
    assert redact(text) == text


def test_redaction_happens_before_the_cut() -> None:
    """Wherever the cut falls, no piece of a key is left: the cut is made on redacted text."""
    key = "0123456789abcdef" * 4  # 64 hex characters
    for prefix in range(80):
        out = redact("x" * prefix + " " + key + " tail", limit=64)
        assert len(out) <= 64
        assert leaked_piece(key, out) is None, (prefix, out)


def test_a_long_text_is_cut_on_a_token_boundary_before_redaction() -> None:
    """Texts longer than the window redaction looks at: a key cut by the window is dropped,
    not left too short to be recognised — even when redaction shrinks the rest below the limit."""
    keys = [f"{i:08x}" + "9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a1f0e9d8c7b6a" for i in range(3000)]
    text = " ".join(keys)
    for limit in (64, 200, 512, 8000):
        out = redact(text, limit=limit)
        assert len(out) <= limit
        for key in keys[::7] + keys[-40:]:
            assert leaked_piece(key, out) is None, (limit, out[-80:])
    # and a key straddling every position of the window's edge in turn
    key = "sk-proj-" + "Zx81kQ2mN7vB4cT9rW3yH6jL0pF5sD1a"
    for pad in range(2000, 2200):
        out = redact("y " * pad + key + " end", limit=512)
        assert leaked_piece(key, out) is None


# --- where messages leave the library --------------------------------------------------------


def _error(status: int, message: str) -> Exception:
    e = Exception(message)
    e.status_code = status  # type: ignore[attr-defined]
    return e


HEX_KEY = "4f" * 32  # 64 hex characters: the shape the issue saw cut to 29


def test_str_of_all_candidates_failed_never_has_a_key() -> None:
    """The exhaustion error's message (what applications log) is redacted before it is cut."""
    chain = ["openai/gpt-4o", "anthropic/claude-sonnet-4"]
    secrets = [s for s in CORPUS if s.shaped]

    async def call(c: mf.Candidate) -> str:
        raise _error(401, "x" * 171 + " " + HEX_KEY + f" for {c.model}")

    async def call_corpus(c: mf.Candidate) -> str:
        raise _error(401, "Incorrect API key provided: " + " ".join(s.secret for s in secrets[:6]))

    import anyio

    for run in (call, call_corpus):
        with pytest.raises(mf.AllCandidatesFailedError) as info:
            anyio.run(lambda r=run: mf.run_with_model_fallback(r, chain))  # type: ignore[misc]
        text = str(info.value)
        assert text.startswith("All models failed (2): ")
        assert leaked_piece(HEX_KEY, text) is None, text
        for s in secrets[:6]:
            assert leaked_piece(s.secret, text) is None, text
        assert "gpt-4o" in text


@pytest.fixture
def spans() -> Iterator[tuple[OTelObserver, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    yield OTelObserver(tracer_provider=tp), exporter
    tp.shutdown()


@pytest.mark.parametrize("sec", CORPUS, ids=[s.name for s in CORPUS])
def test_no_secret_reaches_spans_metrics_logs_or_the_error(
    sec: Secret, spans: tuple[OTelObserver, InMemorySpanExporter], caplog: pytest.LogCaptureFixture
) -> None:
    """Each corpus secret in a provider error, with both observers and one that fails while
    the error is handled: nothing of it in span descriptions/attributes/events, either
    exposition format, any log record, or str() of the raised error."""
    import anyio

    obs, exporter = spans
    reg = CollectorRegistry()
    prom = PrometheusObserver(reg, candidates=["openai/gpt-4o", "groq/llama-3.3-70b"])

    class Failing(ev.Observer):
        component = "failing"

        def attempt_ended(self, event: ev.AttemptEnded) -> None:
            raise RuntimeError("observer bug")

    material = sec.text.replace("{secret}", sec.secret)
    message = (
        f"Error code: 401 - {{'error': {{'message': 'Incorrect API key provided: {material}', "
        f"'password': '{sec.secret}', 'type': 'invalid_request_error'}}}}"
    )

    async def call(c: mf.Candidate) -> str:
        raise _error(401, ("z" * 150 + " ") * (c.provider == "groq") + message)

    with caplog.at_level(logging.DEBUG), pytest.raises(mf.AllCandidatesFailedError) as info:
        anyio.run(
            lambda: mf.run_with_model_fallback(
                call, ["openai/gpt-4o", "groq/llama-3.3-70b"], observers=[obs, prom, Failing()]
            )
        )
    outputs = {
        "str(error)": str(info.value),
        "spans": "\n".join(s.to_json() for s in exporter.get_finished_spans()),
        "exposition": generate_latest(reg).decode(),
        "openmetrics": generate_openmetrics(reg).decode(),
        "logs": caplog.text + "\n".join(r.getMessage() for r in caplog.records),
    }
    assert "[REDACTED]" in outputs["spans"]
    for where, out in outputs.items():
        piece = leaked_piece(sec.secret, out)
        assert piece is None, f"{piece!r} of {sec.name} in {where}"


def test_the_simulator_report_and_its_logs_carry_no_key() -> None:
    """The command's report (JSON and table) and its stderr, on a run where half the provider
    calls fail with a 401 quoting an API key."""
    import os
    import subprocess
    import sys

    from model_fallback.simulate._faults import _FAKE_KEY

    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["OTEL_TRACES_EXPORTER"] = "console"  # spans printed: their descriptions are exported text
    env["OTEL_METRICS_EXPORTER"] = "none"
    outputs = []
    for fmt in (["--json"], []):
        proc = subprocess.run(
            [sys.executable, "-m", "model_fallback", "simulate", "--scenario", "healthy", "--duration", "1",
             "--fault", "auth=0.5", "--metrics-port", "0", "--no-progress", *fmt],
            capture_output=True, text=True, timeout=120, env=env,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
        outputs.append(proc.stdout + proc.stderr)
    assert "auth" in outputs[0] and "[REDACTED]" in outputs[0]  # the console spans were there
    for out in outputs:
        assert leaked_piece(_FAKE_KEY, out) is None


def test_redact_url_hides_only_the_password() -> None:
    """A Redis (or any) URL keeps its scheme, user, host, port and path; the password goes."""
    from model_fallback._redact import redact_url

    assert (
        redact_url("redis://app:s3cr3t-pw@cache.internal:6380/2") == "redis://app:***@cache.internal:6380/2"
    )
    assert redact_url("redis://:s3cr3t-pw@127.0.0.1/0") == "redis://***@127.0.0.1/0"
    assert redact_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert "s3cr3t" not in redact_url("redis://u:s3cr3t@[::1")  # unparsable: nothing leaks
