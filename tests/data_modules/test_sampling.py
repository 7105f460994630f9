import numpy as np
import pytest

from data_modules.sampling import ResumableSampler


def test_yields_epoch_index_tuples_and_is_deterministic():
    s = ResumableSampler(10, seed=3)
    first = list(s)
    assert all(isinstance(e, int) and isinstance(i, int) and e == 0 for e, i in first)
    assert sorted(i for _, i in first) == list(range(10))
    assert list(ResumableSampler(10, seed=3)) == first
    s.set_epoch(1)
    second = list(s)
    assert [e for e, _ in second] == [1] * 10 and second != first


def test_no_shuffle_is_sequential():
    assert list(ResumableSampler(5, shuffle=False)) == [(0, i) for i in range(5)]


@pytest.mark.parametrize("n, drop_last", [(10, True), (11, True), (11, False)])
def test_two_replicas_disjoint_and_covering(n, drop_last):
    parts = [list(ResumableSampler(n, seed=1, num_replicas=2, rank=r, drop_last=drop_last)) for r in range(2)]
    a, b = ([i for _, i in p] for p in parts)
    assert len(a) == len(b) == len(ResumableSampler(n, num_replicas=2, rank=0, drop_last=drop_last))
    if drop_last:
        assert not set(a) & set(b) and len(a) + len(b) == n - n % 2
    else:  # padded by wrapping: everything covered, one duplicate for odd n
        assert set(a) | set(b) == set(range(n)) and len(a) + len(b) == n + n % 2


def test_resume_skips_consumed_samples_once():
    full = list(ResumableSampler(20, seed=5))
    s = ResumableSampler(20, seed=5)
    it = iter(s)
    consumed = [next(it) for _ in range(7)]
    state = s.state_dict()
    assert state == {"epoch": 0, "start": 7}
    resumed = ResumableSampler(20, seed=5)
    resumed.load_state_dict(state)
    assert len(resumed) == 20
    assert consumed + list(resumed) == full
    assert list(resumed) == full  # the skip applies to one iteration only


def test_resume_in_a_later_epoch():
    s = ResumableSampler(12, seed=0, num_replicas=2, rank=1)
    s.load_state_dict({"epoch": 3, "start": 2})
    s.set_epoch(3)
    ref = ResumableSampler(12, seed=0, num_replicas=2, rank=1)
    ref.set_epoch(3)
    assert list(s) == list(ref)[2:]


def test_bad_rank():
    with pytest.raises(ValueError, match="rank"):
        ResumableSampler(10, num_replicas=2, rank=2)
