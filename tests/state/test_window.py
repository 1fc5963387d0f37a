"""The sliding window every rpm/tpm limit is enforced with in one process, and the per-process share rule."""

from __future__ import annotations

from turnout.state.window import SlidingWindow, share


def test_sliding_window_counts_requests_and_tokens_until_they_leave_the_window():
    """rpm counts requests in the last 60s; tpm counts estimated tokens; both free up as the window slides."""
    window = SlidingWindow(2, 1000)
    window.record(0, 400)
    assert window.check(1, 400) is None
    window.record(1, 400)
    assert window.check(2, 10) == "at rpm limit (2/min)"
    assert window.check(60.5, 700) == "at tpm limit (1000/min)"
    assert window.check(61.5, 900) is None


def test_refund_frees_tokens_but_keeps_the_request():
    """A refunded admission stops counting its tokens against tpm but still counts against rpm; unknown ones:
    no-op."""
    window = SlidingWindow(3, 1000)
    assert window.admit(0, 900, grant=7) is None
    assert window.admit(1, 50, grant=8) is None
    assert window.check(2, 200) == "at tpm limit (1000/min)"
    assert window.refund(7) == 900
    assert window.refund(99) == 0  # no such admission
    assert window.refund(7) == 0  # already refunded
    assert window.usage(2) == (2, 50)
    assert window.check(2, 200) is None


def test_forget_drops_the_request_and_its_tokens():
    """A forgotten admission (the client's own fault) no longer counts against rpm or tpm; unknown ones: no-op."""
    window = SlidingWindow(2, 1000)
    assert window.admit(0, 900, grant=1) is None
    assert window.admit(1, 50, grant=2) is None
    assert window.check(2, 10) == "at rpm limit (2/min)"
    assert window.forget(1) == 900
    assert window.forget(7) == 0  # no such admission
    assert window.usage(2) == (1, 50)
    assert window.check(2, 900) is None


def test_admit_records_only_what_fits():
    """`admit` is check-and-record: a refused attempt leaves the window unchanged."""
    window = SlidingWindow(1, None)
    assert window.admit(0, 10, grant=1) is None
    assert window.admit(0.5, 10, grant=2) == "at rpm limit (1/min)"
    assert window.usage(0.5) == (1, 10)
    assert [grant for _, _, grant in window.entries(0.5)] == [1]


def test_an_attempt_larger_than_the_tpm_limit_runs_in_an_empty_window():
    """One request whose estimate exceeds tpm is admitted when nothing else is in the window (or it never runs)."""
    window = SlidingWindow(None, 100)
    assert window.admit(0, 500, grant=1) is None
    assert window.admit(1, 1, grant=2) == "at tpm limit (100/min)"


def test_a_shorter_window_slides_sooner():
    """The window length is a parameter (WINDOW is its default): entries leave after exactly `window` seconds."""
    window = SlidingWindow(1, None, window=2.0)
    window.record(0, 0)
    assert window.check(1.9, 0) is not None
    assert window.check(2.0, 0) is None


def test_refusals_name_whose_share_they_enforce():
    """A window enforcing one process's share says so in its refusal."""
    window = SlidingWindow(15, None, note=": 1 of 4 workers' share of 60 rpm")
    for i in range(15):
        window.record(0, 0, i)
    assert window.check(1, 0) == "at rpm limit (15/min: 1 of 4 workers' share of 60 rpm)"


def test_share_rounds_down_but_never_to_zero():
    """limit // parts, so the parts never exceed the limit together; at least 1 so a small limit still serves."""
    assert share(60, 4) == 15
    assert share(10, 3) == 3
    assert share(2, 4) == 1
    assert share(60, 1) == 60
    assert share(None, 4) is None
