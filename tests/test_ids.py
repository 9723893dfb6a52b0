"""Job ids: unique, fixed width, and in creation order within a process."""

from __future__ import annotations

from unittest import mock

from jobrunner._ids import id_factory


def test_ids_are_unique_fixed_width_and_sort_by_creation() -> None:
    make = id_factory()
    ids = [make() for _ in range(70_000)]  # crosses many 256-id blocks
    assert len(set(ids)) == len(ids)
    assert {len(i) for i in ids} == {28}
    assert ids == sorted(ids)
    assert all(int(i, 16) >= 0 for i in ids)


def test_the_counter_rolling_over_draws_a_new_later_prefix() -> None:
    times = iter([1_000.0, 1_000.5])
    with mock.patch("jobrunner._ids.time.time", lambda: next(times)):
        make = id_factory(counter_bits=10)
        ids = [make() for _ in range(1 << 10 + 1)]  # two prefixes' worth
    first, second = ids[: 1 << 10], ids[1 << 10 :]
    assert len({i[:22] for i in first}) == 1 and len({i[:22] for i in second}) == 1
    assert first[-1][22:] == "0003ff" and second[0][22:] == "000000"
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
