"""engine.precision and engine.deterministic: honoured by every forward pass — training, the
teachers' logits (table and live), evaluation, counterfactuals — recorded in each run's metrics,
stated by the report, and a study mixing them is noted."""

import dataclasses

import pytest
import torch

import kdfair
from kdfair.config import Experiment, experiment_from_dict
from kdfair.errors import ConfigError
from kdfair.store import open_store
from kdfair.store.index import run_precision, settings_note
from kdfair.train.device import autocast, engine_mode, resolve_precision

pytestmark = pytest.mark.usefixtures("one_thread")

ADAM = {"optimizer": "adam", "lr": 0.003, "epochs": 1, "batch_size": 64, "augment": "none"}
EXP = {"name": "prec", "dataset": {"name": "trifeature", "size": 16, "images_per_combination": 1,
                                   "test_fraction": 0.05},
       "teacher": {"model": {"arch": "lenet5"}, "train": ADAM},
       "student": {"model": {"arch": "lenet5"}, "train": ADAM},
       "distill": {"temperatures": [4]}, "seeds": [0], "device": "cpu",
       "analysis": {"tests": False}}


@pytest.fixture
def forwards(monkeypatch):
    """What every module's forward saw: (CPU autocast on, deterministic algorithms on, the
    floating dtypes of its output); and the dtype of every ``torch.autocast`` region entered."""
    seen, entered = [], []
    real = torch.autocast

    class Spy(real):
        def __enter__(self):
            entered.append(self.fast_dtype)
            return super().__enter__()

    monkeypatch.setattr(torch, "autocast", Spy)
    def hook(module, inputs, output):
        outs = output if isinstance(output, (tuple, list)) else [output]
        dtypes = {o.dtype for o in outs if isinstance(o, torch.Tensor) and o.is_floating_point()}
        seen.append((torch.is_autocast_enabled("cpu"),
                     torch.are_deterministic_algorithms_enabled(), dtypes))

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    yield seen, entered
    handle.remove()


def _study(tmp_path, monkeypatch, **engine):
    monkeypatch.setenv("KDFAIR_CACHE", str(tmp_path / "cache"))
    exp = Experiment.model_validate({**EXP, "engine": {"workers": 1, **engine}})
    st = kdfair.run(exp, out=tmp_path, progress=False, write_report=False)
    assert st.complete, st.failed
    return tmp_path / "prec"


def test_fp32_enters_no_autocast_anywhere_and_each_run_records_it(tmp_path, monkeypatch,
                                                                  forwards):
    seen, entered = forwards
    out = _study(tmp_path, monkeypatch, precision="fp32")
    assert entered == []  # not even a disabled region
    assert len(seen) > 100 and not any(on for on, _, _ in seen)
    assert set().union(*(d for _, _, d in seen)) == {torch.float32}  # nothing in bfloat16
    runs = open_store(out).runs
    assert sorted(r.role for r in runs) == ["ds", "nds", "teacher"]
    assert {r.metrics["precision"] for r in runs} == {"fp32"}
    assert {r.metrics["deterministic"] for r in runs} == {False}


def test_bf16_covers_training_teacher_evaluation_and_counterfactuals(tmp_path, monkeypatch,
                                                                     forwards):
    seen, entered = forwards
    out = _study(tmp_path, monkeypatch, precision="bf16")
    assert entered and set(entered) == {torch.bfloat16}
    assert len(seen) > 100 and all(on for on, _, _ in seen)  # every forward, not some
    assert torch.bfloat16 in set().union(*(d for _, _, d in seen))
    runs = open_store(out).runs
    assert {r.metrics["precision"] for r in runs} == {"bf16"}


def test_a_live_teacher_and_the_loop_follow_the_precision(forwards):
    """Augmented inputs: the teacher runs inside the loop (no table), in the students' precision."""
    from kdfair.data.base import SplitData
    from kdfair.spec import RunSpec
    from kdfair.train.batches import Batches
    from kdfair.train.engine import RunJob, Silent, build_run_model, train_group
    from tests.test_grouped import toy_part

    seen, entered = forwards
    parts = {k: toy_part(n, s) for k, n, s in (("train", 64, 0), ("val", 16, 1), ("test", 16, 2))}
    data = SplitData(name="toy", num_classes=4, class_names=list("abcd"), fingerprint="x",
                     **parts)
    cpu = torch.device("cpu")
    spec = dict(experiment="p", arch="lenet5", dataset={}, data_fingerprint="x",
                train={"epochs": 1, "batch_size": 32, "augment": "crop_flip"})
    teacher = build_run_model(RunSpec(role="teacher", seed=0, **spec), data).eval()
    job = RunJob(RunSpec(role="ds", seed=1, temperature=4.0, alpha=0.8, t2_scaling=True, **spec),
                 teacher=teacher.requires_grad_(False))
    batches = {k: Batches(getattr(data, k), data, cpu) for k in ("train", "val", "test")}
    for precision, on in (("fp32", False), ("bf16", True), ("auto", False)):
        seen.clear()
        (res,) = train_group([job], data, cpu, batches, Silent(), {}, precision=precision)
        assert seen and all(s[0] is on for s in seen), precision
        assert (torch.bfloat16 in set().union(*(d for _, _, d in seen))) is on
        assert res.metrics["precision"] == ("bf16" if on else "fp32")
    assert entered and set(entered) == {torch.bfloat16}


def test_deterministic_sets_the_flags_for_training_records_them_and_restores_them(
        tmp_path, monkeypatch, forwards):
    seen, _ = forwards
    cudnn = torch.backends.cudnn
    before = (cudnn.deterministic, cudnn.benchmark, torch.are_deterministic_algorithms_enabled())
    out = _study(tmp_path, monkeypatch, precision="fp32", deterministic=True)
    assert seen and all(det for _, det, _ in seen)
    assert {r.metrics["deterministic"] for r in open_store(out).runs} == {True}
    assert (cudnn.deterministic, cudnn.benchmark,
            torch.are_deterministic_algorithms_enabled()) == before


def test_engine_mode_sets_cudnn_and_tf32_flags_and_restores_them():
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    cuda = torch.device("cuda")  # only flags are set: no GPU is touched
    before = (cudnn.allow_tf32, matmul.allow_tf32, cudnn.deterministic, cudnn.benchmark)
    cudnn.benchmark = True
    try:
        with engine_mode(cuda, "fp32", deterministic=True):
            assert not cudnn.allow_tf32 and not matmul.allow_tf32  # fp32 means fp32
            assert cudnn.deterministic and not cudnn.benchmark
            assert torch.are_deterministic_algorithms_enabled()
            assert torch.is_deterministic_algorithms_warn_only_enabled()
        assert cudnn.benchmark and not torch.are_deterministic_algorithms_enabled()
        with engine_mode(cuda, "bf16"):
            assert cudnn.allow_tf32 == before[0] and not cudnn.deterministic
    finally:
        cudnn.allow_tf32, matmul.allow_tf32, cudnn.deterministic, cudnn.benchmark = before


def test_precision_resolves_per_device_and_a_bad_value_names_the_setting():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert [resolve_precision(p, cpu) for p in ("auto", "fp32", "bf16")] == \
        ["fp32", "fp32", "bf16"]
    assert [resolve_precision(p, cuda) for p in ("auto", "fp32", "bf16")] == \
        ["bf16", "fp32", "bf16"]
    with pytest.raises(ConfigError, match="must be auto, fp32 or bf16; got 'fp16'") as err:
        autocast(cpu, "fp16")
    assert err.value.setting == "engine.precision"
    with pytest.raises(ConfigError, match="engine.precision") as err:
        experiment_from_dict({**EXP, "engine": {"precision": "fp16"}})
    assert "must be one of auto, fp32, bf16, got 'fp16'" in str(err.value)


def test_the_report_states_the_precision_and_notes_a_study_that_mixes_them(tmp_path,
                                                                          monkeypatch):
    from kdfair.analysis.sections import precision_words

    out = _study(tmp_path, monkeypatch, precision="fp32")
    runs = open_store(out).runs
    assert precision_words(runs) == "fp32, every run (engine.precision)"
    assert settings_note(runs) is None
    mixed = [dataclasses.replace(runs[0], metrics={**runs[0].metrics, "precision": "bf16"}),
             *runs[1:]]
    assert precision_words(mixed) == ("mixed: bf16 for 1 runs, fp32 for 2 runs "
                                      "(engine.precision; see Notes)")
    note = settings_note(mixed)
    assert note and "precision bf16" in note and "precision fp32" in note
    # deterministic algorithms on for one run only: noted too
    det = [dataclasses.replace(runs[0], metrics={**runs[0].metrics, "deterministic": True}),
           *runs[1:]]
    note = settings_note(det)
    assert note and "deterministic True" in note and "deterministic False" in note
    # runs stored before precision was recorded: what the engine did then
    assert run_precision({"device_type": "cuda"}) == "bf16"
    assert run_precision({"device_type": "cpu"}) == "fp32"
    kdfair.report(out)
    text = (out / "report" / "report.md").read_text()
    assert "| training precision | fp32, every run (engine.precision) |" in text


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_the_fused_optimizer_used_on_cuda_trains_as_the_unfused_one(optimizer):
    """engine.make_optimizer fuses the update where every parameter is on CUDA; on a CPU (where
    fused kernels exist too) 30 steps of a grouped LeNet bank end within float32 rounding of the
    unfused optimiser, and a CPU model gets the unfused one by default."""
    from kdfair.config import TrainConfig
    from kdfair.models.registry import build_model
    from kdfair.train.engine import make_optimizer

    cfg = TrainConfig(optimizer=optimizer, lr=0.01 if optimizer == "sgd" else 1e-3,
                      weight_decay=5e-4)
    torch.manual_seed(0)
    models = [build_model("lenet5", 4, (3, 16, 16), members=3) for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    opts = [make_optimizer(m, cfg, fused=f) for m, f in zip(models, (False, True), strict=True)]
    assert not opts[0].defaults.get("fused") and opts[1].defaults["fused"]
    assert not make_optimizer(models[0], cfg).defaults.get("fused")  # CPU: unfused
    gen = torch.Generator().manual_seed(1)
    for _ in range(30):
        x, y = torch.randn(8, 9, 16, 16, generator=gen), torch.randint(0, 4, (8, 3),
                                                                       generator=gen)
        for model, opt in zip(models, opts, strict=True):
            loss = torch.nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten())
            opt.zero_grad()
            loss.backward()
            opt.step()
    for a, b in zip(models[0].parameters(), models[1].parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_an_audit_of_given_predictions_claims_no_training_precision():
    """An audit's runs are predictions trained elsewhere: their precision is not recorded, and
    the report says so instead of 'fp32, every run'."""
    from types import SimpleNamespace

    from kdfair.analysis.sections import precision_words

    audited = {"test_acc": 0.9, "epochs": 0, "history": [], "audit_kind": "ds"}
    assert run_precision(audited) == "not recorded"
    runs = [SimpleNamespace(metrics=audited, run_id=f"r{i}") for i in range(3)]
    assert precision_words(runs).startswith("not recorded (audited predictions")
    assert settings_note(runs) is None
    trained = SimpleNamespace(metrics={"precision": "fp32"}, run_id="t")
    assert precision_words([*runs, trained]) == ("mixed: fp32 for 1 runs, not recorded for 3 "
                                                 "runs (engine.precision; see Notes)")
