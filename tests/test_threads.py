"""The thread policy (``threads: auto``): its decisions on measured load, and that the thread count
never changes a model's numbers, which is what lets it change mid-run."""

import importlib
import os

import pytest
import torch

import models
from datamodules.schema import Schema
from experiments.run.threads import ThreadGovernor, busy_ticks, thread_policy
from tests.helpers import composed, layer_specs, random_batch, states_at_one_and_two_threads


class FakeMachine:
    """A clock and ``/proc`` readings: ``run(seconds, others, own)`` advances time with ``others``
    CPUs busy in other processes and ``own`` in this one (ticks at 100 per second)."""

    def __init__(self):
        self.now, self.busy, self.own = 0.0, 0, 0

    def run(self, seconds: float, others: float, own: float) -> None:
        self.now += seconds
        self.busy += round(100 * seconds * (others + own))
        self.own += round(100 * seconds * own)

    def read(self):
        return self.busy, self.own


@pytest.fixture
def machine(monkeypatch):
    monkeypatch.setattr("experiments.run.threads.usable_cpus", lambda: [0, 1])
    monkeypatch.setattr("os.sysconf", lambda name: 100)
    threads = torch.get_num_threads()
    yield FakeMachine()
    torch.set_num_threads(threads)


def governed(machine: FakeMachine) -> ThreadGovernor:
    return ThreadGovernor(interval_s=2.0, read=machine.read, clock=lambda: machine.now).start()


def test_threads_follow_the_cpus_other_processes_leave_free(machine):
    governor = governed(machine)
    assert governor.max_threads == 2 and torch.get_num_threads() == 2
    machine.run(1.0, others=0.0, own=2.0)  # quiet: keeps both
    governor.tick()
    assert torch.get_num_threads() == 2
    machine.run(2.0, others=1.3, own=0.7)  # two hogs squeeze it: one thread
    governor.tick()
    assert torch.get_num_threads() == 1
    machine.run(1.0, others=0.0, own=1.0)  # quiet again, but the next check is not due yet
    governor.tick()
    assert torch.get_num_threads() == 1
    machine.run(1.5, others=0.1, own=1.0)
    governor.tick()
    assert torch.get_num_threads() == 2
    assert governor.summary() == {"threads_min": 1, "threads_max": 2, "thread_changes": 2}


@pytest.mark.parametrize("others, threads", [(0.0, 2), (0.4, 2), (0.6, 1), (1.0, 1), (1.9, 1), (3.0, 1)])
def test_one_thread_per_free_cpu_and_never_none(machine, others, threads):
    assert governed(machine).threads_for(others) == threads


@pytest.mark.parametrize("others, current, threads", [(0.3, 1, 1), (0.15, 1, 2), (0.4, 2, 2), (0.7, 2, 1)])
def test_more_threads_only_with_a_margin_so_a_neighbour_does_not_make_it_flip(machine, others, current, threads):
    assert governed(machine).threads_for(others, current) == threads


def test_without_proc_the_governor_leaves_threads_alone(machine):
    torch.set_num_threads(1)
    governor = ThreadGovernor(read=lambda: None, clock=lambda: machine.now)
    machine.run(5.0, others=0.0, own=1.0)
    governor.tick()
    assert torch.get_num_threads() == 1 and governor.summary() == {}


def test_busy_ticks_read_the_cpus_asked_for_and_this_process(tmp_path):
    (tmp_path / "self").mkdir()
    (tmp_path / "stat").write_text(
        "cpu  99 0 99 99 0 0 0 0 0 0\n"
        "cpu0 10 1 2 500 7 3 4 5 0 0\n"
        "cpu1 20 0 0 500 0 0 0 0 0 0\n"
        "cpu2 40 0 0 500 0 0 0 0 0 0\nintr 1 2 3\n"
    )
    # the command name may hold spaces and parentheses; utime, stime are the 14th and 15th fields
    (tmp_path / "self" / "stat").write_text("42 (a (b) c) R 1 1 1 0 -1 0 0 0 0 0 30 6 0 0 20 0 3 0\n")
    assert busy_ticks([0, 1], tmp_path) == (10 + 1 + 2 + 3 + 4 + 5 + 20, 36)
    assert busy_ticks([0], tmp_path / "missing") is None


def test_busy_ticks_on_this_machine_are_counting():
    if busy_ticks([0]) is None:
        pytest.skip("no /proc here")
    before = busy_ticks(list(range(torch.get_num_threads())))
    sum(i * i for i in range(3_000_000))  # some CPU time of our own
    after = busy_ticks(list(range(torch.get_num_threads())))
    assert after[1] > before[1] and after[0] >= before[0]


def test_thread_policy_values():
    threads = torch.get_num_threads()
    try:
        assert thread_policy(1) is None and torch.get_num_threads() == 1
        assert thread_policy(None) is None and torch.get_num_threads() == 1
        assert isinstance(thread_policy("auto"), ThreadGovernor)
        for bad in (0, -2, "many", True):
            with pytest.raises(ValueError, match="threads must be"):
                thread_policy(bad)
    finally:
        torch.set_num_threads(threads)


# Wide enough that torch's kernels split their work across threads (its grain is 32k elements).
def wide_kwargs(name: str) -> dict:
    model = composed(name)[0]
    return {
        **({"embedding_dim": 16} if "embedding_dim" in model else {}),
        **({"hidden_units": [256, 128]} if layer_specs(model) else {}),
    }


@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_the_thread_count_does_not_change_a_training_step(name):
    schema = Schema.build([(f"c{i}", "categorical", 500) for i in range(8)], dense=["d0"])
    batch = random_batch(schema, size=4096)
    states = states_at_one_and_two_threads(name, schema, batch, **wide_kwargs(name))
    for key, value in states[0].items():
        assert torch.equal(value, states[1][key]), f"{name}: {key} differs between 1 and 2 threads"


def test_importing_models_turns_on_mkl_strict_mode_unless_the_user_chose(monkeypatch):
    monkeypatch.delenv("MKL_CBWR", raising=False)
    importlib.reload(models)
    assert os.environ["MKL_CBWR"] == "AUTO,STRICT"
    monkeypatch.setenv("MKL_CBWR", "AUTO")
    importlib.reload(models)
    assert os.environ["MKL_CBWR"] == "AUTO"
