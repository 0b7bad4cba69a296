"""The prompt-release fence when the prompt is cancelled (task cancellation, a timeout around
the model call): the fence stays pending and the next operation verifies it. Real files, real
locks, real cancel scopes."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

import model_fallback as mf
from model_fallback import events as ev
from model_fallback.session import SessionFile, SessionWriteLock

pytestmark = pytest.mark.anyio


class Fences(ev.Observer):
    def __init__(self) -> None:
        self.checked: list[ev.FenceChecked] = []

    def fence_checked(self, e: ev.FenceChecked) -> None:
        self.checked.append(e)


async def test_cancelled_prompt_does_not_wait_for_the_lock(tmp_path: Path) -> None:
    """A cancelled prompt propagates at once even while someone else holds the lock."""
    path = tmp_path / "s.jsonl"
    sf = SessionFile(path, lock_timeout=30)
    async with sf.locked() as held:
        intruder = SessionWriteLock(path, acquire_timeout=1)
        with anyio.move_on_after(0.2) as scope:
            async with held.released_for_prompt():
                await intruder.acquire()
                await anyio.sleep(60)
        assert scope.cancelled_caught
        assert not held.holding  # it did not wait 30 s for the intruder
        intruder.release()


async def test_untouched_file_after_a_cancelled_prompt_continues(tmp_path: Path) -> None:
    """After a cancelled prompt, the next release re-acquires, verifies (no takeover) and works."""
    path = tmp_path / "s.jsonl"
    fences = Fences()
    sf = SessionFile(path, lock_timeout=5, observers=[fences])
    async with sf.locked() as held:
        await held.append({"n": 1})
        with anyio.move_on_after(0.1):
            async with held.released_for_prompt():
                await anyio.sleep(60)
        async with held.released_for_prompt():
            pass
        assert held.holding
        await held.append({"n": 2})
    assert [f.takeover for f in fences.checked] == [False, False]
    assert [e["n"] for e in await sf.read()] == [1, 2]


async def test_change_during_a_cancelled_prompt_is_a_takeover_at_the_next_release(tmp_path: Path) -> None:
    """Another SessionFile appends while the cancelled prompt ran: the next release raises the
    takeover before its body runs, and the session stays poisoned."""
    path = tmp_path / "s.jsonl"
    fences = Fences()
    sf, other = SessionFile(path, lock_timeout=5, observers=[fences]), SessionFile(path, lock_timeout=5)
    ran_second_body = False
    async with sf.locked() as held:
        await held.append({"role": "user"})
        with anyio.move_on_after(0.2):
            async with held.released_for_prompt():
                await other.append({"role": "system"})
                await anyio.sleep(60)
        with pytest.raises(mf.SessionTakeoverError) as info:
            async with held.released_for_prompt():
                ran_second_body = True
        assert not ran_second_body
        assert info.value.after.size > info.value.before.size
        with pytest.raises(mf.SessionTakeoverError):
            await held.append({"role": "assistant"})
    assert [f.takeover for f in fences.checked] == [True]
    assert [e["role"] for e in await sf.read()] == ["user", "system"]


async def test_change_during_a_cancelled_prompt_is_caught_by_append(tmp_path: Path) -> None:
    """An own append after a cancelled prompt compares the pending fence under the lock first."""
    path = tmp_path / "s.jsonl"
    sf, other = SessionFile(path, lock_timeout=5), SessionFile(path, lock_timeout=5)
    async with sf.locked() as held:
        with anyio.move_on_after(0.2):
            async with held.released_for_prompt():
                await other.append({"by": "other"})
                await anyio.sleep(60)
        with pytest.raises(mf.SessionTakeoverError):
            await held.append({"by": "me"})
    assert await sf.read() == [{"by": "other"}]


async def test_driver_attempt_timeout_around_a_hand_made_attempt(tmp_path: Path) -> None:
    """An application composing the fence with the driver's own attempt_timeout: the hung primary
    is a timeout, the next candidate's release verifies the pending fence and serves."""
    path = tmp_path / "s.jsonl"
    sf = SessionFile(path, lock_timeout=5)
    calls: list[str] = []
    async with sf.locked() as held:

        async def attempt(c: mf.Candidate) -> str:
            async with held.released_for_prompt():
                calls.append(str(c))
                if c.provider == "slow":
                    await anyio.sleep(60)
                return str(c)

        result = await mf.run_with_model_fallback(attempt, ["slow/a", "fast/b"], attempt_timeout=0.2)
        assert held.holding
    assert result.value == "fast/b" and calls == ["slow/a", "fast/b"]
    assert [a.reason for a in result.attempts] == [mf.FailoverReason.TIMEOUT, None]
