"""The stall model of `tb.timing`, shared by both simulator backends: coin flips, bursts of
0..MAX_STALL cycles, and the cap the notification delivery bound relies on."""

import random

import pytest

from tb.checker import DELIVERY_BOUND
from tb.timing import MAX_STALL, OutputStall, TransferTimer, ready, validate_timing, wait_cycles


def test_without_bursts_the_coin_flips_are_unchanged():
    a, b = random.Random(5), random.Random(5)
    stall = OutputStall(a, 0.4)
    assert [stall.step() for _ in range(500)] == [ready(b, 0.4) for _ in range(500)]
    a, b = random.Random(6), random.Random(6)
    assert [wait_cycles(a, 2, 0.3) for _ in range(200)] == \
        [wait_cycles(b, 2, 0.3, 0.0) for _ in range(200)]


def test_bursts_stall_long_and_never_beyond_the_cap():
    stall = OutputStall(random.Random(1), backpressure=0.9, bursts=0.2)
    values = [stall.step() for _ in range(20000)]
    runs, low = [], 0
    for v in values:
        low = 0 if v else low + 1
        runs.append(low)
    assert max(runs) == MAX_STALL == stall.longest      # long stalls happen, and are capped
    waits = [wait_cycles(random.Random(s), 1, 0.5, 0.3) for s in range(3000)]
    assert max(waits) == 1 + MAX_STALL and min(waits) == 1
    assert sum(w > 20 for w in waits) > 100             # bursts, not only coin flips
    assert DELIVERY_BOUND == 2 * MAX_STALL + 1


def test_transfer_timer_counts_bursts():
    timer = TransferTimer(random.Random(2), latency=1, bursts=0.9)
    cycles = 0
    while not timer.step(True):
        cycles += 1
    assert cycles == timer.longest >= 1


@pytest.mark.parametrize("kwargs", [{"bursts": 1.0}, {"bursts": -0.1}, {"latency": -1},
                                    {"backpressure": True}, {"wait_states": "0.1"}])
def test_bad_timing_is_a_value_error(kwargs):
    with pytest.raises(ValueError, match="must be"):
        validate_timing(**kwargs)
