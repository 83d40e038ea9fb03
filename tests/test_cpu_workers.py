"""On a CPU, parallel across runs, not across threads: by default one training process per core,
each with one thread; a phase with nothing to share out trains in this process; a worker's error
reaches the caller as the error it is."""

import errno

import pytest
import torch

from kdfair.config import EngineConfig, experiment_from_dict
from kdfair.executors import LocalPoolExecutor, execute, local_executor
from kdfair.executors import local as local_mod
from kdfair.store import open_store
from tests.test_executors import TINY

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_default_is_one_process_per_core_with_one_thread_each(monkeypatch):
    from kdfair import config

    assert EngineConfig().workers == 0 and EngineConfig().threads == 0
    for cores in (2, 3, 16):
        monkeypatch.setattr(config, "available_cores", lambda c=cores: c)
        pool = local_executor(experiment_from_dict(TINY))
        assert isinstance(pool, LocalPoolExecutor)
        assert (pool.devices, pool.threads) == (["cpu"] * cores, 1)


def test_a_phase_of_one_chunk_trains_in_this_process_with_the_workers_threads(tmp_path,
                                                                              monkeypatch):
    """A study resumed with one run left: no process is started, the run trains here with the
    thread count a worker would have had, and the process' own count is restored."""
    import shutil

    from kdfair.executors import LocalExecutor

    exp = experiment_from_dict({**TINY, "seeds": [0], "distill": {"temperatures": [2]},
                                "analysis": {"tests": False}})
    assert execute(exp, tmp_path, LocalExecutor()).complete
    (nds,) = [p for p in (tmp_path / "runs").iterdir() if p.name.startswith("nds-")]
    shutil.rmtree(nds)

    def no_pool(*a, **kw):
        raise AssertionError("a process pool was started for a phase of one chunk")

    monkeypatch.setattr(local_mod, "ProcessPoolExecutor", no_pool)
    real, threads = local_mod.train_runs, []

    def spy(*a, **kw):
        threads.append(torch.get_num_threads())
        return real(*a, **kw)

    monkeypatch.setattr(local_mod, "train_runs", spy)
    torch.set_num_threads(2)
    events = []
    st = execute(exp, tmp_path, LocalPoolExecutor(
        ["cpu", "cpu"], threads=1, on_run=lambda spec, state: events.append(spec.run_id)))
    assert st.complete and events == [nds.name] and threads == [1]
    assert torch.get_num_threads() == 2
    assert open_store(tmp_path).runs[0].metrics  # the study is whole again
    assert {r.metrics["threads"] for r in open_store(tmp_path).runs if r.role == "nds"} == {1}


def test_a_workers_error_is_raised_as_itself_naming_the_worker(tmp_path, monkeypatch):
    """Two teachers on two forked workers; saving one fails with a full disk: the caller gets
    that OSError (as if raised in this process), with a note naming the worker's runs; the
    other worker's run is kept."""
    real = local_mod.train_runs

    def full_disk_for_seed_1(exp, out, specs, **kw):
        if any(s.seed == 1 for s in specs):
            raise OSError(errno.ENOSPC, "No space left on device", "logits.npy")
        return real(exp, out, specs, **kw)

    monkeypatch.setattr(local_mod, "train_runs", full_disk_for_seed_1)  # inherited by forks
    exp = experiment_from_dict(TINY)
    with pytest.raises(OSError) as err:
        execute(exp, tmp_path, LocalPoolExecutor(["cpu", "cpu"], threads=1,
                                                 start_method="fork"))
    assert err.value.errno == errno.ENOSPC
    assert any("in the worker training teacher-s1-" in n for n in err.value.__notes__)
    assert [r.run_id[:10] for r in open_store(tmp_path).runs] == ["teacher-s0"]
