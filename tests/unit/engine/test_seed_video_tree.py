"""The seed video decision tree (journeys/it-manager.yaml), executed: not watched →
re-invite with a different message; stopped part-way → the missed part as a PDF;
finished → webinar invitation."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from services.orchestrator.engine import Decision, compile_journey
from services.orchestrator.journey import load_journey_file

from . import Prospect, sent

SEED = Path(__file__).resolve().parents[3] / "journeys" / "it-manager.yaml"
IT_MANAGER = compile_journey(load_journey_file(SEED), 1)


def watching_the_video() -> tuple[Prospect, Decision]:
    """A prospect of the seed journey who was just sent the product video."""
    p = Prospect.of(IT_MANAGER)
    p.touch("ad_click", campaign="it-spring")
    p.touch("page_view")
    welcome = p.touch("form_submitted")
    assert sent(welcome) in (["it-welcome-guide"], ["it-welcome-checklist"])
    [working_hours] = welcome.timers
    video = p.fire(working_hours)
    assert sent(video) == ["it-video-intro"]
    assert p.current.runs["it-manager"].step == "await-video"
    return p, video


def watch(p: Prospect, percent: int | None) -> Decision:
    """The prospect reports ``percent`` of the video (None: nothing at all)."""
    if percent is None:
        return Decision(state=p.current)
    return p.touch("video_progress", {"percent": percent, "content": "it-video-intro"})


@pytest.mark.parametrize(
    ("percent", "content"),
    [
        (None, "it-video-reinvite"),
        (0, "it-video-reinvite"),
        (25, "it-pdf-summary"),
        (30, "it-pdf-summary"),
        (50, "it-pdf-summary"),
        (75, "it-pdf-summary"),
        (90, "it-pdf-summary"),
    ],
)
def test_five_days_after_the_video_how_far_they_watched_decides(
    percent: int | None, content: str
) -> None:
    p, video = watching_the_video()
    progress = watch(p, percent)
    assert progress.commands == []  # short of the end: the wait goes on
    [timeout] = video.timers
    decided = p.fire(timeout)
    assert sent(decided) == [content]
    path = [t.step for t in decided.transitions if t.reason == "step"]
    assert path[:2] == ["video-depth", content.removeprefix("it-")]


def test_watched_to_the_end_gets_the_webinar_invitation_at_once() -> None:
    p, video = watching_the_video()
    assert watch(p, 75).commands == []
    finished = watch(p, 100)
    assert sent(finished) == ["it-webinar-invite"]
    [timeout] = video.timers
    assert finished.cancelled_timers == [timeout.timer_id]
    assert p.current.runs["it-manager"].step == "await-registration"


def test_the_re_invitation_is_a_different_message_than_the_video() -> None:
    p, video = watching_the_video()
    [timeout] = video.timers
    reinvite = p.fire(timeout)
    [command] = reinvite.commands
    assert command.content != video.commands[0].content
    assert command.step == "video-reinvite"


@pytest.mark.parametrize(
    ("percent", "content", "exit_reason"),
    [
        (None, None, "video-not-watched"),
        (25, "it-pdf-summary", None),
        (60, "it-pdf-summary", None),
        (100, "it-webinar-invite", None),
    ],
)
def test_after_the_re_invitation(
    percent: int | None, content: str | None, exit_reason: str | None
) -> None:
    p, video = watching_the_video()
    [timeout] = video.timers
    [second_timeout] = p.fire(timeout).timers
    # Three days on: the frequency cap (3 sends a week) has room again.
    p.now += timedelta(days=3)
    progress = watch(p, percent)
    decided = progress if percent == 100 else p.fire(second_timeout)
    assert sent(decided) == ([content] if content else [])
    run = p.current.runs["it-manager"]
    assert run.exit_reason == exit_reason
    if exit_reason is not None:
        assert p.current.traits["video_ignored"] is True
        assert p.current.facts["score"] == -10
