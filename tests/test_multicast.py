"""One guest IPI to n destinations (`sim.multicast`): every curve's shape follows from the
round-trip model's parameters and the RTL bench, the crossover from the curves."""

import pytest

from sim.multicast import (
    BUS_VARIANTS, METRICS, PATHS, PV_SEND_IPI_DESTINATIONS, BusVariant, crossover,
    hypercalls_for, multicast_costs,
)
from sim.round_trip import RTL_BENCH, MemoryLatency, fit, posting_cost, software_posting_cost

N = range(1, 65)


@pytest.fixture(scope="module")
def model():
    return fit()


def per_write(model):
    return posting_cost("x2APIC", model.latency, bench=model.bench)


# -- the curves ----------------------------------------------------------------------------------

def test_ipiv_grows_linearly_with_the_rtl_posting_cost(model):
    senders = [multicast_costs(n, model=model).ipiv.sender_cycles for n in N]
    slopes = [b - a for a, b in zip(senders, senders[1:])]
    assert slopes == [pytest.approx(per_write(model))] * (len(N) - 1)
    assert senders[0] == pytest.approx(per_write(model))


def test_hypercall_is_one_exit_plus_n_software_posts(model):
    exit_cycles, post = model.value("kvm_full_exit"), software_posting_cost(model.latency)
    for n in N:
        costs = multicast_costs(n, model=model)
        assert costs.hypercalls == 1
        assert costs.pv_hypercall.sender_cycles == pytest.approx(exit_cycles + n * post)


def test_a_hypercall_carries_128_destinations_then_another_exit_is_paid(model):
    exit_cycles, post = model.value("kvm_full_exit"), software_posting_cost(model.latency)
    full = multicast_costs(PV_SEND_IPI_DESTINATIONS, model=model)
    more = multicast_costs(PV_SEND_IPI_DESTINATIONS + 1, model=model)
    assert (full.hypercalls, more.hypercalls) == (1, 2)
    assert more.pv_hypercall.sender_cycles - full.pv_hypercall.sender_cycles == \
        pytest.approx(exit_cycles + post)
    assert [hypercalls_for(n) for n in (1, 128, 129, 256, 257)] == [1, 1, 2, 2, 3]


def test_exits_are_n_copies_of_the_seed_models_x2apic_exit_path(model):
    # The seed's x2APIC IPIv-off cell without what every IPI pays: one fastpath exit.
    one_exit = model.cell("x2APIC", False).total - model.value("base")
    assert one_exit == pytest.approx(model.value("kvm_full_exit")
                                     - model.value("kvm_fastpath_saving")
                                     + software_posting_cost(model.latency))
    for n in N:
        assert multicast_costs(n, model=model).exits.sender_cycles == \
            pytest.approx(n * one_exit)


def test_the_hypercall_costs_the_same_with_and_without_ipiv(model):
    for n in (1, 7, 64, 200):
        costs = multicast_costs(n, model=model)
        assert costs.pv_hypercall_no_ipiv == costs.pv_hypercall


def test_components_add_up_and_no_target_waits_longer_than_the_sender(model):
    for n in (1, 5, 64):
        costs = multicast_costs(n, model=model)
        for name in PATHS:
            path = costs.path(name)
            assert path.sender_cycles == pytest.approx(sum(c for _, c in path.components))
            assert 0 < path.last_target_cycles <= path.sender_cycles
        # the processor posts before the next instruction: the sender waits for the last post
        assert costs.ipiv.last_target_cycles == costs.ipiv.sender_cycles


def test_costs_follow_the_model_they_are_given(model):
    slow_pid = model.with_latency(MemoryLatency(pid_first=300))
    extra = 300 - model.latency.pid_first      # every destination's PID line, every path
    a, b = multicast_costs(10, model=model), multicast_costs(10, model=slow_pid)
    for name in PATHS:
        assert b.path(name).sender_cycles - a.path(name).sender_cycles == \
            pytest.approx(10 * extra)


def test_the_classic_bus_takes_the_models_rtl_bench(model):
    bench = {case: {"transfers": e["transfers"],
                    "cycles": {lat: c + 10 for lat, c in e["cycles"].items()}}
             for case, e in RTL_BENCH.items()}
    slower = fit(bench=bench)
    assert multicast_costs(3, model=slower).ipiv.sender_cycles - \
        multicast_costs(3, model=model).ipiv.sender_cycles == pytest.approx(3 * 10)


# -- bus variants --------------------------------------------------------------------------------

def test_bus_must_be_a_known_variant():
    assert set(BUS_VARIANTS) == {"classic", "pipelined"}
    with pytest.raises(ValueError, match="bus must be one of 'classic', 'pipelined', not "
                                         "'wishbone'"):
        multicast_costs(4, bus="wishbone")
    with pytest.raises(ValueError, match="bus must be one of"):
        crossover(bus="nosuch")


def test_the_pipelined_bus_takes_its_own_rtl_bench(model):
    """Each IPIv write on the pipelined bus costs the pipelined unit's posting (its round
    trips at the model's latencies); software paths do not depend on the bus."""
    classic = multicast_costs(16, model=model)
    piped = multicast_costs(16, bus="pipelined", model=model)
    write = posting_cost("x2APIC", model.latency, bus="pipelined")
    assert piped.bus == "pipelined" and piped.ipiv.sender_cycles == pytest.approx(16 * write)
    assert write < per_write(model)          # fewer dependent waits than six transfers
    for name in ("pv_hypercall", "exits", "pv_hypercall_no_ipiv"):
        assert piped.path(name) == classic.path(name)
    # at every transfer's latency L (R = L + 1): 3R + 4 against the classic 6R + 1 (the
    # issue's figures), so n writes differ by n (3R - 3)
    for lat in (1, 4, 20):
        far = model.with_latency(MemoryLatency(uniform=lat))
        r = lat + 1
        assert multicast_costs(5, bus="pipelined", model=far).ipiv.sender_cycles == 5 * (3 * r + 4)
        assert multicast_costs(5, model=far).ipiv.sender_cycles == 5 * (6 * r + 1)


def test_another_bus_variant_plugs_in_as_one_table_entry(model, monkeypatch):
    cheap = per_write(model) / 4
    monkeypatch.setitem(BUS_VARIANTS, "test", BusVariant("test", "a test variant",
                                                         lambda m: cheap))
    classic = multicast_costs(16, model=model)
    other = multicast_costs(16, bus="test", model=model)
    assert other.bus == "test"
    assert other.ipiv.sender_cycles == pytest.approx(16 * cheap)
    for name in ("pv_hypercall", "exits", "pv_hypercall_no_ipiv"):     # software: no bus
        assert other.path(name) == classic.path(name)


@pytest.mark.parametrize("n", [0, -1, 1.5, True, "4"])
def test_n_must_be_a_whole_number_of_destinations(n):
    with pytest.raises(ValueError, match="n must be a whole number"):
        multicast_costs(n)


def test_crossover_names_a_known_path_and_metric():
    with pytest.raises(ValueError, match="path must be one of"):
        crossover(path="nosuch")
    with pytest.raises(ValueError, match="metric must be one of"):
        crossover(metric="cycles")
    with pytest.raises(ValueError, match="path must be one of"):
        multicast_costs(2).path("nosuch")


# -- the crossover -------------------------------------------------------------------------------

def first_below(model, path, against, metric, n_max, bus="classic"):
    """The crossover by brute force over the curves."""
    for n in range(1, n_max + 1):
        costs = multicast_costs(n, bus=bus, model=model)
        if getattr(costs.path(path), metric) < getattr(costs.path(against), metric):
            return n
    return None


@pytest.mark.parametrize("metric", METRICS)
def test_crossover_is_where_the_curves_cross(model, metric):
    assert crossover(metric=metric, model=model) == first_below(
        model, "pv_hypercall", "ipiv", metric, 64)
    found = crossover(path="exits", against="pv_hypercall_no_ipiv", metric=metric, model=model)
    assert found == first_below(model, "exits", "pv_hypercall_no_ipiv", metric, 64)


def test_hypercall_beats_ipiv_only_where_its_exit_is_paid_back(model):
    # Per destination the hypercall saves (IPIv write - software posting); its exit is paid
    # back past exit / saving destinations, unless that is more than one hypercall carries.
    saving = per_write(model) - software_posting_cost(model.latency)
    exit_cycles = model.value("kvm_full_exit")
    found = crossover(model=model, n_max=1024)
    if saving <= 0 or exit_cycles / saving >= PV_SEND_IPI_DESTINATIONS:
        assert found is None
        assert crossover(model=model) is None
    else:
        assert found == int(exit_cycles // saving) + 1


def test_a_slower_unit_makes_the_hypercall_win_where_the_lines_cross(model):
    # Every transfer of the unit at remote-socket latency: the software posting is unchanged
    # (the core runs it), the unit's write costs more, and the curves cross.
    far = model.with_latency(MemoryLatency(uniform=100))
    saving = per_write(far) - software_posting_cost(far.latency)
    assert saving > 0
    expected = int(far.value("kvm_full_exit") // saving) + 1
    assert expected <= 64
    assert crossover(model=far) == expected == first_below(far, "pv_hypercall", "ipiv",
                                                           "sender_cycles", 64)
    before = multicast_costs(expected - 1, model=far)
    assert before.pv_hypercall.sender_cycles >= before.ipiv.sender_cycles


def test_without_ipiv_the_hypercall_beats_exits_after_its_exit_is_paid(model):
    one_exit = multicast_costs(1, model=model).exits.sender_cycles
    post = software_posting_cost(model.latency)
    expected = int(model.value("kvm_full_exit") // (one_exit - post)) + 1
    assert crossover(path="pv_hypercall_no_ipiv", against="exits", model=model) == expected
