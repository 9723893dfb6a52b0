"""The pure rules of ``jobrunner.flow``: windows, scopes, room and the choice under limits."""

from __future__ import annotations

from jobrunner.flow import Exclusion, Limits, RateLimit, choose, exclusions, plan, room, spent_wake

NOW = 1_750_000_005.0


def test_windows_start_at_multiples_of_the_period_in_every_process() -> None:
    rate = RateLimit(10, 60)
    assert rate.window(NOW) == 1_749_999_960.0
    assert rate.window(1_749_999_960.0) == 1_749_999_960.0
    assert RateLimit(1, 0.5).window(NOW + 0.7) == NOW + 0.5


def test_a_scope_names_the_limit_and_for_workspaces_the_tenant() -> None:
    per_queue = RateLimit(5, 1, queue="api")
    assert per_queue.scope("api", "call", "acme") == "api|*|1.0|all"
    assert per_queue.counts("api|*|1.0|all")
    assert per_queue.scope("other", "call", "acme") is None
    per_tenant = RateLimit(5, 1, name="sync", per_workspace=True)
    assert per_tenant.scope("q", "sync", "acme") == "*|sync|1.0|w=acme"
    assert per_tenant.workspace_of("*|sync|1.0|w=acme") == "acme"
    # A limit of the whole name with the same period keeps a counter of its own.
    whole = RateLimit(50, 1, name="sync")
    assert whole.scope("q", "sync", "acme") == "*|sync|1.0|all"
    assert not per_tenant.counts(whole.prefix) and not whole.counts("*|sync|1.0|w=acme")
    assert per_tenant.scope("q", "sync", None) is None  # no tenant: not limited by it
    assert per_tenant.scope("q", "other", "acme") is None


def test_names_with_separators_never_share_a_scope() -> None:
    # Unescaped, both would be "a|b|*|1.0|all"; and a queue named "*" is not "any queue".
    piped_queue = RateLimit(5, 1, queue="a|b")
    queue_and_name = RateLimit(5, 1, queue="a", name="b")
    assert piped_queue.prefix != RateLimit(5, 1, queue="a", name="b|*").prefix
    assert piped_queue.scope("a|b", "job", None) != queue_and_name.scope("a", "b", None)
    assert RateLimit(5, 1, queue="*").prefix != RateLimit(5, 1).prefix


def test_room_is_the_limit_less_what_runs_never_below_zero() -> None:
    limits = Limits(queues={"a": 2, "b": 1}, names={"n": 3})
    assert room(limits, {"a": 1, "b": 4}, {}) == ({"a": 1, "b": 0}, {"n": 3})


def test_choose_skips_full_keys_without_holding_back_the_rest() -> None:
    candidates = [
        (0, 1.0, 1, "q", "n", "first"),
        (0, 2.0, 2, "q", "n", "second: n is full"),
        (0, 3.0, 3, "q", "m", "third"),
        (5, 0.0, 4, "full", "m", "full queue"),
    ]
    assert choose(candidates, 10, {"full": 0}, {"n": 1}) == ["first", "third"]
    assert choose(candidates, 1, {}, {}) == ["first"]


def test_plan_spends_starts_and_says_when_the_window_that_held_jobs_back_ends() -> None:
    limits = Limits(rates=(RateLimit(2, 10, queue="api"),))
    scope = "api|*|10.0|all"
    window = 1_750_000_000.0
    candidates = [(0, float(i), i, "api", "call", None, i) for i in range(4)]
    fresh = plan(candidates, 10, limits, {}, {}, {}, NOW)
    assert fresh.chosen == [0, 1]
    assert fresh.counters == {scope: (window, 2)}
    assert fresh.wake_at == window + 10
    # One start already spent in this window; an old window's count does not matter.
    assert plan(candidates, 10, limits, {}, {}, {scope: (window, 1)}, NOW).chosen == [0]
    assert plan(candidates, 10, limits, {}, {}, {scope: (window - 10, 2)}, NOW).chosen == [0, 1]


def test_spent_scopes_become_exclusions_and_wake_the_runner_at_their_windows_end() -> None:
    limits = Limits(rates=(RateLimit(1, 60, name="sync", per_workspace=True), RateLimit(3, 1, queue="q")))
    window = 1_749_999_960.0
    counters = {
        "*|sync|60.0|w=acme": (window, 1),  # spent
        "*|sync|60.0|w=globex": (window - 60, 5),  # an old window: fresh budget
        "q|*|1.0|all": (1_750_000_005.0, 3),  # spent
    }
    assert exclusions(limits, counters, NOW) == [
        Exclusion(None, "sync", "acme"),
        Exclusion("q", None, None),
    ]
    assert spent_wake(limits, counters, NOW) == NOW + 1
