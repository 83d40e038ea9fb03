"""The ``kdfair`` command line: thin — parses, calls the API, prints."""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from typer.core import TyperCommand

from kdfair.errors import ConfigError, KdfairError

if TYPE_CHECKING:
    from collections.abc import Callable

    from kdfair.config import Experiment
    from kdfair.overrides import Override

class _PlainHelp(TyperCommand):
    """Help that reads: option values named plainly (PATH, TEXT, INTEGER; nothing for a flag)
    instead of ``<bool>``, ``<int>``, ``<list[str]>``, and arguments by name in the usage line
    (EXPERIMENT, not ``{experiment}``)."""

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)
        for p in params:
            if p.metavar is not None or not hasattr(p, "display_type"):
                continue
            if p.param_type_name == "argument":  # named, its type said by its help
                p.metavar = (p.name or "").upper()
                p.display_type_rich = lambda ctx: ""
            else:
                p.metavar = "" if getattr(p, "count", False) else _plain_type(p.display_type(ctx))
        return params

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        import re

        return [re.sub(r"^\{(.+)\}(\.\.\.)?$", r"\1\2", piece)
                for piece in super().collect_usage_pieces(ctx)]


def _plain_type(shown: str) -> str:
    """typer's ``<int>``, ``<list[str]>``, ``<bool>`` as help names them: INTEGER, TEXT, none."""
    label = shown.strip("<>").removeprefix("list[").removesuffix("]")
    names = {"str": "TEXT", "int": "INTEGER", "float": "NUMBER", "bool": "", "path": "PATH",
             "directory": "PATH", "file": "PATH"}
    return names.get(label.lower(), label)


class _Typer(typer.Typer):
    """Every command with :class:`_PlainHelp` help."""

    def command(self, *args: Any, cls: Any = None, **kwargs: Any) -> Any:
        return super().command(*args, cls=cls or _PlainHelp, **kwargs)


app = _Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="kdfair: what knowledge distillation leaves behind — class-wise bias, "
                       "group and individual fairness across temperatures.")
console = Console()
err_console = Console(stderr=True)
_STATE = {"quiet": False}
# exit statuses (docs/store.md): 0 every planned run is done; 1 an error (the message says
# which file, why, and the fix); 2 bad command-line usage; 3 the study ended with failed or
# missing runs; 130 interrupted.
EXIT_ERROR, EXIT_RUNS_FAILED, EXIT_INTERRUPTED = 1, 3, 130
_DEBUG = {"on": False}
# flag -> the experiment field it sets (as an override, after --set) or the argument of
# kdfair.run it gives; an error names its setting by the flag (else as --set PATH=…)
FLAGS = {
    "--device": "device", "--slurm-partition": "slurm.partition", "--slurm-time": "slurm.time",
    "--slurm-gpus": "slurm.gpus", "--slurm-cpus": "slurm.cpus", "--slurm-mem": "slurm.mem_gb",
    "--slurm-account": "slurm.account", "--slurm-runs-per-job": "slurm.runs_per_job",
    "--slurm-option": "slurm.options", "--out": "out", "--data-root": "data_root",
    "--executor": "executor", "--no-wait": "wait",
}
_FLAG_OF = {setting: flag for flag, setting in FLAGS.items()}


def flag_for(setting: str) -> str:
    """How the command line sets ``setting``: its flag, else ``--set <path>=…``."""
    return _FLAG_OF.get(setting) or f"--set {setting}=…"


def _version(value: bool) -> None:
    if value:
        from kdfair import __version__

        console.print(f"kdfair {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    verbose: int = typer.Option(0, "--verbose", "-v", count=True,
                                help="more log lines: -v INFO, -vv DEBUG"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="only errors: no progress, no log "
                               "lines below ERROR"),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="print kdfair's version and exit"),
    debug: bool = typer.Option(False, "--debug", help="show the traceback of an error instead "
                               "of its one-line message"),
) -> None:
    """kdfair: what knowledge distillation leaves behind — class-wise bias, group and individual
    fairness across temperatures."""
    from kdfair.progress import configure_logging

    _STATE["quiet"] = quiet
    _DEBUG["on"] = debug
    configure_logging(verbose, quiet)
    console.quiet = quiet


def echo(text: object, label: str = "", style: str = "", err: bool = False) -> None:
    """Print user text (paths, run ids, values, messages) verbatim: never parsed as console
    markup, so '[/]' or '[bold]' in it neither crashes nor vanishes; ``label`` (e.g. "error:")
    goes before it in ``style``. Every line holding user text is printed through here."""
    line = Text.assemble((label, style), " " if label else "", str(text))
    (err_console if err else console).print(line, highlight=False, soft_wrap=True)


def plain(text: object, style: str = "") -> Text:
    """User text as a table cell or title: never parsed as markup (see :func:`echo`)."""
    return Text(str(text), style=style)


def _fail(message: str) -> None:
    echo(message, "error:", "bold red", err=True)
    raise typer.Exit(EXIT_ERROR) from None


def _friendly(f):
    """Print a KdfairError's or OSError's message (no traceback unless --debug) and exit 1;
    Ctrl-C exits 130."""

    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        from kdfair.errors import os_error

        try:
            return f(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except KdfairError as err:
            if _DEBUG["on"]:
                raise
            _fail(err.worded(flag_for))
        except OSError as err:
            if _DEBUG["on"]:
                raise
            _fail(os_error(err).worded(flag_for))
        except KeyboardInterrupt:
            err_console.print("interrupted: finished runs are kept; run the same command again "
                              "to resume")
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except Exception as err:  # a bug: still one line, the traceback on request
            if _DEBUG["on"]:
                raise
            _fail(f"unexpected {type(err).__name__}: {err} (run with --debug for the "
                  "traceback, and please report it); finished runs are kept")

    return wrapper


def _end_of_study(st) -> None:
    """Exit 3 when the study ended with runs failed or missing (0 only when all are done)."""
    for rid, why in st.damaged.items():
        echo(f"{rid}: {why}", "damaged", "red", err=True)
    if not st.complete:
        raise typer.Exit(EXIT_RUNS_FAILED)


def _locked(where: Path, wait: bool):
    from kdfair.store import study_lock

    return study_lock(where, wait=wait,
                      on_wait=lambda msg: err_console.print(msg, markup=False,
                                                            highlight=False))


def _print_repaired(st) -> None:
    for rid, why in st.repaired.items():
        echo(f"{rid}: {why} — moved to damaged/{rid}, trained again", "damaged", "yellow",
             err=True)


def _run_and_report(exp, out: Path, data_root: Path | None, report: bool,
                    wait: bool = True) -> None:
    from kdfair import api

    where = api.results_dir(exp, out)

    def on_plan(specs, done) -> None:
        echo(f"{len(specs)} runs ({len(done)} already done) → {where}", f"{exp.name}:", "bold")

    with _locked(where, wait):
        t0 = time.perf_counter()
        st = api.run(exp, out=out, data_root=data_root, write_report=False,
                     progress=not _STATE["quiet"], on_plan=on_plan)
        _print_repaired(st)
        console.print(f"trained in {time.perf_counter() - t0:.1f} s: {len(st.done)} done, "
                      f"{len(st.failed)} failed, {len(st.missing)} missing")
        for rid, why in st.failed.items():
            echo(f"{rid}: {why}", "failed", "red", err=True)
        if report:
            _report(where)
    _end_of_study(st)


def _report(where: Path, options: Any = None) -> None:
    """Write the report (a spinner or a line per section meanwhile); print where it went first,
    then the summary — a table in a terminal wide enough for it, else one ``model: key value;
    …`` line per model (never cut: logs, narrow terminals) — and at most ``FINDINGS_SHOWN``
    findings (the rest stay in the report)."""
    from kdfair import api
    from kdfair.progress import phase_view

    with phase_view(progress=not _STATE["quiet"]) as say:
        say(f"report: opening {where}")
        res = api.report(where, options)
    console.print(f"report: {res.md_path}  {res.html_path}", markup=False, highlight=False,
                  soft_wrap=True)
    print_summary(res.summary, where)
    shown = res.findings[:FINDINGS_SHOWN]
    for line in shown:
        console.print(f"• {line}", markup=False, highlight=False, soft_wrap=True)
    if len(res.findings) > len(shown):
        console.print(f"… {len(res.findings) - len(shown)} more finding(s) in {res.md_path}",
                      markup=False, highlight=False, soft_wrap=True)


FINDINGS_SHOWN = 10


def print_summary(summary, where: Path) -> None:
    """The summary as a table in a terminal wide enough for it, else one full line per model
    (logs, narrow terminals): a cell is never cut."""
    from rich.measure import Measurement

    from kdfair.progress import interactive

    table = Table(title=plain(f"summary — {where}"))
    for col in summary.columns:  # findings and cells hold brackets: '[all seeds equal]'
        table.add_column(plain(col))
    for row in summary.itertuples(index=False):
        table.add_row(*map(plain, row))
    width = Measurement.get(console, console.options.update_width(10**6), table).maximum
    if interactive(console.file) and width <= console.width:
        console.print(table)
        return
    console.print(f"summary — {where}", markup=False, highlight=False, soft_wrap=True)
    for line in summary_lines(summary):
        console.print(line, markup=False, highlight=False, soft_wrap=True)


def summary_lines(summary) -> list[str]:
    """The summary table as one line per model, ``model: column value; …`` (for logs)."""
    cols = [str(c) for c in summary.columns]
    return [f"{row[0]}: " + "; ".join(f"{c} {v}" for c, v in zip(cols[1:], row[1:], strict=True))
            for row in summary.itertuples(index=False)]


def _run_examples() -> str:
    """``run --help``'s epilog: examples, and the presets by name."""
    from kdfair.presets import preset_names

    return ("\b\nExamples:\n"
            "  kdfair run demo                        the embedded demo, minutes on a CPU\n"
            "  kdfair run cifar100-r56-r20 --dry-run  its runs and a time estimate\n"
            "  kdfair run my.yaml --set seeds=[0,1,2,3,4] --set distill.alpha=0.5\n"
            "  kdfair run demo --sweep distill.alpha=0.5,0.9   one study per value\n"
            "  kdfair run cifar10-r56-r20 --executor slurm --slurm-partition gpu\n\n"
            "Presets (`kdfair presets` says what each is): " + ", ".join(preset_names()))


@app.command(epilog=_run_examples())
@_friendly
def run(
    experiment: str = typer.Argument(..., help="experiment YAML file or preset name"),
    out: Path = typer.Option(Path("results"), help="results root; the study goes to OUT/<name>"),
    data_root: Path | None = typer.Option(None, help="where data sets live (default: the "
                                          "experiment's dataset.root, $KDFAIR_DATA or ./data)"),
    device: str | None = typer.Option(None, help="override the experiment's device"),
    set_: list[str] | None = typer.Option(None, "--set", help="override one field of the "
                                          "experiment, DOTTED.PATH=VALUE (YAML value; "
                                          "repeatable), e.g. --set distill.alpha=0.5"),
    sweep: list[str] | None = typer.Option(None, help="run one study per value of a field, "
                                           "DOTTED.PATH=V1,V2,… (into OUT/<name>-<field><value>; "
                                           "repeatable: the product), e.g. --sweep "
                                           "distill.alpha=0.5,0.8,0.9"),
    report: bool = typer.Option(True, help="write the report at the end"),
    dry_run: bool = typer.Option(False, "--dry-run", help="train nothing: print what `kdfair "
                                 "plan` prints (the resolved experiment, the runs, an "
                                 "estimate)"),
    executor: str = typer.Option("local", help="local: this machine (one worker per GPU when "
                                 "there are several); slurm: one SLURM job per bundle"),
    wait: bool = typer.Option(True, help="wait for another `kdfair run` on the same results "
                              "directory to end (--no-wait: exit at once); slurm: also wait for "
                              "the jobs, then report (--no-wait submits and returns)"),
    slurm_partition: str | None = typer.Option(None, help="SLURM partition (default: the "
                                               "cluster's default)"),
    slurm_time: str | None = typer.Option(None, help="time limit per job: minutes, H:MM:SS or "
                                          "D-HH:MM:SS (default 120 min)"),
    slurm_gpus: int | None = typer.Option(None, help="GPUs per job (default 1; 0 with device "
                                          "cpu)"),
    slurm_cpus: int | None = typer.Option(None, help="CPU cores per job (default 8)"),
    slurm_mem: float | None = typer.Option(None, help="memory per job in GB"),
    slurm_account: str | None = typer.Option(None, help="SLURM account to charge"),
    slurm_runs_per_job: int | None = typer.Option(None, help="split bundles into jobs of at "
                                                  "most N runs (default: one job per bundle)"),
    slurm_option: list[str] | None = typer.Option(None, help="another sbatch option, "
                                                  "KEY=VALUE (repeatable), e.g. qos=high"),
) -> None:
    """Run a study (only what the results directory lacks), then write its report."""
    from kdfair.executors import EXECUTORS

    if executor not in EXECUTORS:
        raise ConfigError(f"--executor {executor!r}: choose one of {', '.join(EXECUTORS)}")
    slurm = {"--slurm-partition": slurm_partition, "--slurm-time": slurm_time,
             "--slurm-gpus": slurm_gpus, "--slurm-cpus": slurm_cpus, "--slurm-mem": slurm_mem,
             "--slurm-account": slurm_account, "--slurm-runs-per-job": slurm_runs_per_job}
    given = [f for f, v in slurm.items() if v is not None]
    given += ["--slurm-option"] if slurm_option else []
    if executor == "local" and given:
        raise ConfigError(f"{', '.join(given)} only apply with --executor slurm")
    flags = [*_flag_overrides({"--device": device, **slurm}),
             *(_sbatch_option(text) for text in slurm_option or [])]
    exp = _load(experiment, set_, flags)
    run_one = _run_and_report if executor == "local" else _run_on_slurm
    if sweep:  # --dry-run: each study's plan
        _run_sweep(exp, sweep, set_, out, (lambda one: _print_plan(one, out, data_root))
                   if dry_run else (lambda one: run_one(one, out, data_root, report, wait)),
                   compare_hint=not dry_run)
        return
    if dry_run:
        _print_plan(exp, out, data_root)
        return
    if executor == "local":
        _run_and_report(exp, out, data_root, report, wait)
    else:
        _run_on_slurm(exp, out, data_root, report, wait)


def _run_sweep(exp: Experiment, sweeps: list[str], sets: list[str] | None, out: Path,
               run_one: Callable[[Experiment], None], compare_hint: bool = True) -> None:
    """One study per point of the sweeps' product, one after the other (each resumable); exit 3
    at the end when any ended with runs failed or missing."""
    from kdfair.sweep import parse_sweep, sweep_experiments

    fixed = [".".join(_set_override(text).keys) for text in sets or []]
    studies = sweep_experiments(exp, [parse_sweep(text) for text in sweeps], fixed)
    console.print(f"sweep: {len(studies)} studies: {', '.join(e.name for e in studies)}",
                  markup=False, highlight=False, soft_wrap=True)
    incomplete = []
    for one in studies:
        try:
            run_one(one)
        except typer.Exit as end:
            if end.exit_code != EXIT_RUNS_FAILED:
                raise
            incomplete.append(one.name)
    if compare_hint:
        dirs = " ".join(str(out / e.name) for e in studies)
        console.print(f"side by side: kdfair compare {dirs}", markup=False, highlight=False,
                      soft_wrap=True)
    if incomplete:
        err_console.print(f"studies with runs failed or missing: {', '.join(incomplete)}; run "
                          "the same command again to resume them", markup=False,
                          highlight=False)
        raise typer.Exit(EXIT_RUNS_FAILED)


@app.command()
@_friendly
def plan(
    experiment: str = typer.Argument(..., help="experiment YAML file or preset name"),
    out: Path = typer.Option(Path("results"), help="results root; the study goes to OUT/<name>"),
    data_root: Path | None = typer.Option(None, help="where data sets live"),
    device: str | None = typer.Option(None, help="override the experiment's device"),
    set_: list[str] | None = typer.Option(None, "--set", help="override one field, "
                                          "DOTTED.PATH=VALUE (repeatable)"),
) -> None:
    """What `kdfair run` would do, training nothing: the resolved experiment as YAML, the runs
    (done and to train, per role) and a time estimate from a few timed training steps of each
    role's model on this device."""
    _print_plan(_load(experiment, set_, _flag_overrides({"--device": device})), out, data_root)


def _print_plan(exp: Experiment, out: Path, data_root: Path | None) -> None:
    from kdfair import api
    from kdfair.progress import fmt_duration, phase_view

    with phase_view(progress=not _STATE["quiet"]) as say:
        p = api.plan(exp, out, data_root=data_root, on_step=say)
    console.print("# the experiment as it will run (every default and override filled in)",
                  markup=False, highlight=False)
    console.print(p.yaml(), markup=False, highlight=False, soft_wrap=True)
    n, left = len(p.specs), len(p.to_train)
    console.print(f"{exp.name}: {n} runs ({n - left} already done, {left} to train) → "
                  f"{p.where}", markup=False, highlight=False, soft_wrap=True)
    rows = [("role", "runs", "done", "to train", "per run")]
    rows += [(r.role, str(r.total), str(r.done), str(r.to_train),
              fmt_duration(r.seconds_per_run) if r.to_train else "-") for r in p.roles()]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for row in rows:
        console.print("  " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                       for i, (c, w) in enumerate(zip(row, widths, strict=True))),
                      markup=False, highlight=False)
    if p.refusal:
        console.print(f"`kdfair run` would refuse this directory: {p.refusal}", markup=False,
                      highlight=False, soft_wrap=True)
    e = p.estimate
    if e is None:
        console.print(f"no time estimate: {p.problem}", markup=False, highlight=False,
                      soft_wrap=True)
        return
    console.print(f"estimate: {fmt_duration(e.total_s)} — training {fmt_duration(e.train_s)} "
                  f"on {e.workers} worker(s) ({e.device}, {e.threads} thread(s) each), report "
                  f"{fmt_duration(e.report_s)}; from a few timed training steps of each role "
                  f"({e.probe_s:.1f} s)", markup=False, highlight=False, soft_wrap=True)


def _load(experiment: str, sets: list[str] | None, flags: list[Override]) -> Experiment:
    """The experiment with every override: ``--set`` first, then the flags of its fields."""
    from kdfair import api

    return api.load_experiment(experiment, [*map(_set_override, sets or []), *flags],
                               label="--set")


def _set_override(text: str) -> Override:
    """``--set DOTTED.PATH=VALUE`` as an override (the value read as YAML)."""
    from kdfair.overrides import Override, parse_override

    keys, value = parse_override(text, "--set")
    return Override(tuple(keys), value, f"--set {text}")


def _flag_overrides(values: dict[str, Any]) -> list[Override]:
    """Flags of experiment fields (flag -> value, None: not given) as overrides."""
    from kdfair.overrides import Override

    return [Override(tuple(FLAGS[f].split(".")), v, f"{f} {v}")
            for f, v in values.items() if v is not None]


def _sbatch_option(text: str) -> Override:
    """``--slurm-option KEY=VALUE`` as an override of ``slurm.options.KEY`` (a bare KEY is a
    flag: ``exclusive``)."""
    from kdfair.overrides import Override

    key, eq, value = text.partition("=")
    key = key.strip().lstrip("-")
    if not key:
        raise ConfigError(f"--slurm-option {text!r}: give KEY=VALUE, e.g. qos=high")
    return Override(("slurm", "options", key), value if eq else True, f"--slurm-option {text}")


def _run_on_slurm(exp: Experiment, out: Path, data_root: Path | None, report: bool,
                  wait: bool) -> None:
    """Run on SLURM (the API makes the executor and checks the cluster), then print the jobs."""
    from kdfair import api
    from kdfair.executors import RichSlurmView

    view = RichSlurmView(err_console)
    # partition, limits, earlier jobs: checked before anything is written
    ex = api.make_executor("slurm", exp, out, wait=wait, view=view)
    cfg = ex.config
    where = api.results_dir(exp, out).resolve()
    part = ex.partition.name if ex.partition else cfg.partition
    echo(f"SLURM partition {part}, {cfg.gpus_for(exp)} GPU(s) and {cfg.cpus} CPU(s) per job "
         f"→ {where}", f"{exp.name}:", "bold")
    t0 = time.perf_counter()
    with _locked(where, wait), view:
        st = api.run(exp, out=where.parent, data_root=data_root, executor=ex,
                     write_report=False)
    _print_repaired(st)
    n_runs = sum(len(j.runs) for j in ex.jobs)
    if not wait:
        arrays = sorted({j.job_id.split("_")[0] for j in ex.jobs}, key=int)
        if not ex.jobs:
            console.print(f"nothing to submit: {len(st.done)} runs done")
        else:
            echo(f"submitted {len(ex.jobs)} job(s) for {n_runs} run(s) ({len(st.done)} already "
                 f"done): job array(s) {', '.join(arrays)}; logs under {where / 'slurm'}")
            echo(f"follow with `kdfair status {where}`; when the jobs have ended, `kdfair report "
                 f"{where}` (run this command again to resubmit what is missing)")
        return  # submitted: 0 (the jobs' outcome is for `kdfair status` to tell)
    console.print(f"{len(ex.jobs)} job(s) ended in {time.perf_counter() - t0:.1f} s: "
                  f"{len(st.done)} runs done, {len(st.failed)} failed, "
                  f"{len(st.missing)} missing")
    for j in ex.failed_jobs:
        echo(f"{j.job_id} ({j.state}" + (f": {j.detail}" if j.detail else "") + f") — runs "
             f"{', '.join(j.runs)}; log: {j.log}", "failed job", "red", err=True)
    jobs_failed = {r for j in ex.failed_jobs for r in j.runs}
    for rid, why in st.failed.items():
        if rid not in jobs_failed:
            echo(f"{rid}: {why}", "failed", "red", err=True)
    if st.failed or st.missing:
        err_console.print("run the same command again to resubmit what is missing",
                          highlight=False)
    if report:
        _report(where)
    _end_of_study(st)


@app.command()
@_friendly
def demo(out: Path = typer.Option(Path("results"), help="results root; the demo goes to OUT/demo"),
         device: str | None = typer.Option(None, help="cpu, cuda or auto"),
         set_: list[str] | None = typer.Option(None, "--set", help="override a field, "
                                               "DOTTED.PATH=VALUE (repeatable)")) -> None:
    """The embedded demo: Trifeature, ResNet teacher → LeNet-5 student, 3 seeds, T from 1 to 20."""
    _run_and_report(_load("demo", set_, _flag_overrides({"--device": device})), out, None, True)


@app.command()
@_friendly
def audit(
    predictions: Path = typer.Argument(..., help="predictions YAML file: name, labels, teacher, "
                                       "nds, ds ({T: [one file per seed]}), groups, features…"),
    out: Path = typer.Option(Path("results"), help="results root; the audit goes to OUT/<name>"),
    report: bool = typer.Option(True, help="write the report"),
    set_: list[str] | None = typer.Option(None, "--set", help="an analysis option, recorded "
                                          "with the audit (repeatable), e.g. --set "
                                          "analysis.vector_figures=true"),
) -> None:
    """Analyse predictions made elsewhere (logits, probabilities or predicted classes): writes a
    results directory and its report; nothing is trained."""
    from kdfair.auditing import audit_file

    where = audit_file(predictions, out, write_report=False, analysis=_analysis_sets(set_))
    echo(f"audit written to {where}")
    if report:
        _report(where)


RESULTS_HELP = ("a study's results directory, OUT/<name> as `kdfair run` writes it, or the "
                "OUT root holding one study")


def _study(results: Path) -> Path:
    """The study ``results`` means (the OUT root of one study: that study, and say so)."""
    from kdfair.studies import find_study

    where, note = find_study(results)
    if note:
        err_console.print(note, markup=False, highlight=False, soft_wrap=True)
    return where


@app.command()
@_friendly
def report(results: Path = typer.Argument(..., help=RESULTS_HELP),
           set_: list[str] | None = typer.Option(None, "--set", help="change an analysis "
                                                 "option for this report (repeatable), e.g. "
                                                 "--set analysis.pairing=paired")) -> None:
    """Analyse a study's results: report.md, report.html and CSV tables under RESULTS/report."""
    from kdfair import api

    where = _study(results)
    changes = _analysis_sets(set_)
    _report(where, api.analysis_options(where, changes) if changes else None)


def _analysis_sets(sets: list[str] | None) -> dict[str, Any]:
    """``--set analysis.FIELD=VALUE`` (or ``FIELD=VALUE``) of ``kdfair report`` / ``audit`` as
    ``{field: value}``; any other field is refused: the runs fix the rest of a study."""
    from kdfair.overrides import parse_override

    changes: dict[str, Any] = {}
    for text in sets or []:
        keys, value = parse_override(text, "--set")
        if keys[0] == "analysis":
            keys = keys[1:]
        if len(keys) != 1:
            raise ConfigError(f"--set {text}: only analysis options can be changed here "
                              "(--set analysis.FIELD=VALUE, e.g. --set analysis.pairing=paired; "
                              "docs/analysis.md lists them); the runs fix the rest of a study")
        changes[keys[0]] = value
    return changes


@app.command()
@_friendly
def compare(
    studies: list[Path] = typer.Argument(..., help="two or more studies' results directories, "
                                         "or an OUT root standing for every study under it"),
    out: Path | None = typer.Option(None, help="where the comparison goes (default: "
                                    "<the studies' common parent>/comparison)"),
    set_: list[str] | None = typer.Option(None, "--set", help="change an analysis option of "
                                          "every study (repeatable), as `kdfair report --set` "
                                          "does, e.g. --set analysis.pairing=paired"),
) -> None:
    """Several studies side by side: accuracy, #SC/#TC, DPD/EOD per T with seed CIs, each
    column headed by the settings in which the studies differ (e.g. alpha=0.5); writes
    report.md, report.html and CSV tables."""
    from kdfair import api

    res = api.compare(studies, out, changes=_analysis_sets(set_) or None)
    for _, row in res.studies.iterrows():
        console.print(f"{row['label']}: {row['path']}", markup=False, highlight=False)
    console.print(f"comparison: {res.md_path}  {res.html_path}", markup=False,
                  highlight=False, soft_wrap=True)


@app.command()
@_friendly
def status(results: Path = typer.Argument(..., help=RESULTS_HELP)) -> None:
    """Which runs of a study are done, damaged, missing or failed (exit 3 unless all done)."""
    from kdfair.runner import status as study_status
    from kdfair.store import ResultsDir

    results = _study(results)
    store = ResultsDir(results)
    name = store.experiment().get("name", str(results))
    planned = store.load_plan()
    st = study_status(store, planned)
    queued = _queued_on_slurm(results)
    table = Table(title=plain(f"{name} — {results}"))
    for col in ("run", "status", "detail"):
        table.add_column(col)
    counts = {"done": 0, "pending": 0, "running": 0, "damaged": 0, "missing": 0, "failed": 0}
    colors = {"done": "green", "pending": "cyan", "running": "blue", "failed": "red",
              "missing": "yellow", "damaged": "magenta"}
    done = set(st.done)
    for rid in planned:
        state = ("done" if rid in done else "damaged" if rid in st.damaged
                 else "failed" if rid in st.failed else "missing")
        detail = (st.failed[rid] if state == "failed" else
                  f"{st.damaged[rid]} (`kdfair run` retrains it)" if state == "damaged" else "")
        if state != "done" and rid in queued:  # a job of this study will train it
            state, job = queued[rid]
            detail = f"SLURM job {job}"
        counts[state] += 1
        table.add_row(plain(rid), plain(state, colors[state]), plain(detail))
    console.print(table)
    shown = [f"{n} {k}" for k, n in counts.items()
             if n or k not in ("pending", "running", "damaged")]
    console.print(", ".join(shown))
    if counts["done"] != len(planned):
        raise typer.Exit(EXIT_RUNS_FAILED)


def _queued_on_slurm(results: Path) -> dict[str, tuple[str, str]]:
    """run id -> (pending | running, job id) for runs whose SLURM job has not ended."""
    from kdfair import executors

    if not executors.submitted_jobs(results):
        return {}
    try:
        jobs = executors.job_states(results)
    except (KdfairError, OSError) as err:
        echo(f"SLURM job states unavailable: {err}", err=True)
        return {}
    return {r: (j.category, j.job_id) for j in jobs if not j.ended for r in j.runs}


@app.command()
@_friendly
def trifeature(
    out: Path = typer.Option(..., help="directory to write PNG files and index.csv into"),
    size: int = typer.Option(224, help="image side in pixels"),
    images_per_combination: int = typer.Option(10, help="images per (shape, texture, colour)"),
    test_images_per_combination: int = typer.Option(
        None, help="images per held-out (test) combination [default: images-per-combination]"),
    split: str = typer.Option("combinations", help="combinations (hold out whole combinations) "
                              "or images (a random share of all images)"),
    test_fraction: float = typer.Option(0.2, help="share of combinations (or images) for test"),
    seed: int = typer.Option(0, help="seed of every random draw"),
) -> None:
    """Write the Trifeature data set as PNG files plus a CSV index."""
    from kdfair.data.trifeature import write_png_dataset

    csv = write_png_dataset(out, {"size": size, "images_per_combination": images_per_combination,
                                  "test_images_per_combination": test_images_per_combination,
                                  "split": split, "test_fraction": test_fraction, "seed": seed})
    echo(f"wrote {csv}")


@app.command()
@_friendly
def export(results: Path = typer.Argument(..., help=RESULTS_HELP),
           run_id: str = typer.Argument(..., help="the run to export (`kdfair status` lists "
                                        "them)"),
           out: Path = typer.Option(Path("."), help="directory to write the files into"),
           factory: str | None = typer.Option(None, help="a custom architecture's factory as "
                                              "package.module:function (when the study did "
                                              "not record one)")) -> None:
    """Write a run's trained model: RUN_ID.safetensors and RUN_ID.json (architecture, options,
    custom factory, classes, input shape and normalisation) — `kdfair.load_exported` gives the
    module back."""
    from kdfair.export import export_model

    path = export_model(_study(results), run_id, out, factory=factory)
    echo(f"wrote {path} and {path.with_suffix('.json')}")


@app.command()
def presets() -> None:
    """List the experiment presets, one per line, name first."""
    import yaml

    from kdfair.presets import preset_names, preset_path

    for name in preset_names():
        data = yaml.safe_load(preset_path(name).read_text())  # type: ignore[union-attr]
        t, s = data.get("teacher", {}).get("model", {}), data.get("student", {}).get("model", {})
        ds = data.get("dataset", {}).get("name", "?")
        print(f"{name}\t{ds}: {t.get('arch', '?')} → {s.get('arch', '?')}")


@app.command()
@_friendly
def datasets(root: Path | None = typer.Option(None, help="data root to check")) -> None:
    """List every data set (one block each): what it needs on disk, and whether it is found."""
    from kdfair.data.registry import dataset_catalog
    from kdfair.listing import format_datasets

    print(format_datasets(dataset_catalog(root)))


def main() -> None:  # pragma: no cover
    """The console script's entry point is ``app`` itself; logging is set up in its callback."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
