"""Figures, the table printed on the terminal, and ``bench/RESULTS.md``."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bench.cpu import OTHERS, PY_SPY_RATE, Phase, Profile


@dataclass
class Figure:
    key: str  # which figure of the issue: "a" to "d"
    name: str
    unit: str  # "ms" or "/s"
    ours: float
    baseline: float | None
    baseline_name: str
    aim: str
    met: bool | None  # None: no aim for this row
    higher_is_better: bool
    samples: int
    detail: str = ""
    baseline_samples: int | None = None  # when not as many as ``samples``

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline == 0:
            return None
        return self.ours / self.baseline


@dataclass
class Report:
    date: datetime
    machine: dict[str, Any]
    database: str
    figures: list[Figure]
    facts: dict[str, float]
    stages: dict[str, float]
    phases: list[Phase]
    seconds: float
    settings: dict[str, str]
    profiles: list[Profile] = field(default_factory=list)

    def phase(self, name: str) -> Phase | None:
        return next((phase for phase in self.phases if phase.name == name), None)


def number(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "ms":
        return f"{value:.1f} ms"
    if value >= 100:
        return f"{value:,.0f}/s"
    return f"{value:.1f}/s"


def ratio(figure: Figure) -> str:
    value = figure.ratio
    return "—" if value is None else f"{value:.2f}x"


def samples(figure: Figure) -> str:
    if figure.baseline_samples is None:
        return f"{figure.samples:,}"
    return f"{figure.samples:,} / {figure.baseline_samples:,}"


def verdict(figure: Figure) -> str:
    if figure.met is None:
        return ""
    return "met" if figure.met else "MISSED"


def render_table(report: Report) -> str:
    rows = [("", "Figure", "Aegir", "Baseline", "Ratio", "Aim", "")]
    for f in report.figures:
        rows.append(
            (
                f"({f.key})",
                f.name,
                number(f.ours, f.unit),
                number(f.baseline, f.unit),
                ratio(f),
                f.aim,
                verdict(f),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    baselines = [f"({f.key}) {f.name}: baseline = {f.baseline_name}" for f in report.figures]
    return "\n".join([*lines, "", *[b for b in baselines if not b.endswith("= ")]])


TITLES = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}

# What ``make bench`` said before issue 12's engine work, for the ratios people ask for.
BEFORE = [
    "Before issue 12's work on the engine (code 918bfc0, SQLite only, every run and action "
    "running the test command, a machine shared with other work): action round trip "
    "55.0 ms p50 (23.2 ms of it the command); 20.5 runs/s; 36,786 log lines/s into the "
    "database and to the websocket; trigger → first line p95 80.5 ms (57 ms beyond the "
    "command). The no-op figures below have no such “before”: the in-process task that "
    "makes them is new.",
    "",
]


def render_markdown(reports: list[Report]) -> str:
    """The dispatch figures of each database measured, under one machine description."""
    first = reports[0]
    m = first.machine
    seconds = sum(report.seconds for report in reports)
    out = [
        "# Benchmark results",
        "",
        f"Written by `make bench` (`bench/run.py`) on {first.date:%Y-%m-%d %H:%M} UTC; "
        "every run overwrites this part of the file. The bench took "
        f"{seconds:.0f} s of measuring.",
        "",
        "## Machine",
        "",
        f"- CPU: {m['cpu']}, {m['cores']} cores",
        f"- Python: {m['python']}",
        f"- Redis: {m['redis']}",
        f"- OS: {m['os']}",
        "- Databases: "
        + ", ".join(TITLES.get(r.database, r.database) for r in reports)
        + " (each fresh, migrated with `alembic upgrade head`; PostgreSQL a throwaway "
        "server with fsync=off, as the tests start it)",
        f"- Code measured: {m['code']}",
        "",
        "Everything (Redis, `aegir serve`, `aegir worker`, `aegir relay`, the baseline "
        "arq worker and the bench's own client) runs on this one machine, over 127.0.0.1. "
        "Aegir runs at its default settings.",
        "",
        *BEFORE,
    ]
    for report in reports:
        out += database_section(report)
    out += ["## Settings", ""]
    out += [f"- {name}: {text}." for name, text in first.settings.items()]
    out.append("")
    return "\n".join(out)


def database_section(report: Report) -> list[str]:
    out = [
        f"## {TITLES.get(report.database, report.database)}",
        "",
        *interference(report),
        "Ratio is Aegir / baseline: below 1 is faster for times, above 1 is more for rates.",
        "",
        "| | Figure | Aegir | Baseline | Ratio | Aim | Met | Samples (Aegir / baseline) |",
        "|---|---|---:|---:|---:|---|---|---:|",
    ]
    for f in report.figures:
        out.append(
            f"| ({f.key}) | {f.name} | {number(f.ours, f.unit)} | {number(f.baseline, f.unit)} "
            f"| {ratio(f)} | {f.aim} | {verdict(f)} | {samples(f)} |"
        )
    out += ["", "Baselines:", ""]
    for f in report.figures:
        if f.baseline_name:
            out.append(f"- ({f.key}) {f.name}: {f.baseline_name}.")
    details = [f"- ({f.key}) {f.name}: {f.detail}." for f in report.figures if f.detail]
    if details:
        out += ["", "Checks:", "", *details]
    out += ["", "### Targets", ""]
    out += [f"- {paragraph}" for paragraph in assessment(report)]
    out += ["", "### Where the time goes", ""]
    if report.stages:
        out += [
            "Trigger → first log line (d), median of each stage, from the timestamps Aegir "
            "stores (run created and started, line read) and the bench's clock:",
            "",
            "| Stage | Median |",
            "|---|---:|",
        ]
        out += [f"| {stage} | {value:.1f} ms |" for stage, value in report.stages.items()]
        out.append("")
    out += cpu_table(report)
    out.append("")
    out += profile_tables(report)
    return out


def profile_tables(report: Report) -> list[str]:
    """py-spy's view of the extra no-op runs (b): each process's busy time by layer, and
    the Aegir functions it was spent under."""
    if not report.profiles:
        return ["(No py-spy profile: py-spy is not installed, or may not attach here.)", ""]
    runs = report.facts.get("profiled_runs", 0.0) or 1.0
    out = [
        f"Profile of {runs:.0f} more no-op runs (b), taken apart from the timed ones: py-spy "
        f"at {PY_SPY_RATE} samples/s on each process, idle samples left out. CPU ms per run "
        "by layer (the innermost layer a sample is in), then the share of each Aegir "
        "function the time was spent for (the innermost of ours on the stack, with the "
        "library calls below it). A thread waiting inside SQLite (for its lock, or in "
        "fsync) counts as busy to py-spy: the CPU table above is the true CPU.",
        "",
    ]
    for profile in sorted(report.profiles, key=lambda p: -p.samples):
        if not profile.samples:
            continue
        per_run = 1000.0 / PY_SPY_RATE / runs
        layers = sorted(profile.layers.items(), key=lambda item: -item[1])
        functions = sorted(profile.functions.items(), key=lambda item: -item[1])[:8]
        out.append(
            f"- **{profile.name}**: {profile.samples * per_run:.1f} ms per run; "
            + ", ".join(f"{name} {count * per_run:.1f}" for name, count in layers)
            + ". For: "
            + ", ".join(
                f"`{name}` {100 * count / profile.samples:.0f}%" for name, count in functions
            )
            + "."
        )
    out.append("")
    return out


def interference(report: Report) -> list[str]:
    """A warning when other processes took a noticeable share of the machine."""
    cores = max(int(report.machine.get("cores", 1)), 1)
    capacity = sum(phase.wall for phase in report.phases) * cores
    others = sum(phase.cpu.get(OTHERS, 0.0) for phase in report.phases)
    if not capacity or others / capacity < 0.05:
        return []
    worst = max(report.phases, key=lambda phase: phase.cpu.get(OTHERS, 0.0) / phase.wall)
    return [
        f"**Caution:** other processes on this machine used {others:.0f} CPU-seconds "
        f"({others / capacity:.0%} of its capacity) while the bench measured, up to "
        f"{worst.cpu.get(OTHERS, 0.0) / (worst.wall * cores):.0%} during “{worst.name}” "
        "(see the CPU table below). The figures are pessimistic; run `make bench` on an "
        "idle machine to compare.",
        "",
    ]


def cpu_table(report: Report) -> list[str]:
    names: list[str] = []
    for phase in report.phases:
        names += [name for name in phase.cpu if name not in names and name != OTHERS]
    names.append(OTHERS)
    cores = max(int(report.machine.get("cores", 1)), 1)
    out = [
        "CPU seconds used by each process during each phase (from /proc; `x: commands` is "
        "what x's subprocesses used; `other processes` is everything else the machine ran "
        "meanwhile). Busy is all of it / (wall time x "
        f"{cores} cores): near 100% means the machine, not a wait, is the limit.",
        "",
        "| Phase | Wall | " + " | ".join(names) + " | Busy |",
        "|---|---:|" + "---:|" * len(names) + "---:|",
    ]
    for phase in report.phases:
        cells = [f"{phase.cpu[name]:.2f}" if name in phase.cpu else "" for name in names]
        busy = sum(phase.cpu.values()) / (phase.wall * cores) if phase.wall else 0.0
        out.append(
            f"| {phase.name} | {phase.wall:.1f} s | " + " | ".join(cells) + f" | {busy:.0%} |"
        )
    return out


def _aim(report: Report, key: str) -> str:
    rows = [f for f in report.figures if f.key == key and f.met is not None]
    if not rows:
        return "no aim set"
    missed = [f.name for f in rows if not f.met]
    if not missed:
        return "**aim met**"
    return "**aim missed** (" + "; ".join(missed) + ")"


def _per_run(phase: Phase | None, runs: float) -> str:
    if phase is None or not runs:
        return ""
    parts = sorted(
        ((name, seconds) for name, seconds in phase.cpu.items() if name != OTHERS),
        key=lambda item: -item[1],
    )
    return ", ".join(f"{name} {1000 * seconds / runs:.1f} ms" for name, seconds in parts)


def assessment(report: Report) -> list[str]:
    f = report.facts
    out: list[str] = []
    if "action_p50_ms" in f:
        ours, tuned, command = f["action_p50_ms"], f["arq_tuned_p50_ms"], f["subprocess_p50_ms"]
        with_command = f["command_action_p50_ms"]
        out.append(
            f"(a) No-op action round trip: {_aim(report, 'a')}. p50 {ours:.1f} ms, p95 "
            f"{f['action_p95_ms']:.1f} ms over HTTP (sign-in, the task's row read, enqueue, "
            f"the worker's run of an in-process task, the reply), against {tuned:.1f} ms "
            f"and {f['arq_tuned_p95_ms']:.1f} ms for a raw arq no-op job at tuned polls "
            f"(no HTTP, no database): {ours / tuned:.2f}x. The action that runs the test "
            f"command answers in {with_command:.1f} ms (p50), of which the command alone, "
            f"started bare by the bench, takes {command:.1f} ms: "
            f"{with_command - command:.1f} ms of Aegir around a subprocess. At arq's "
            f"default polls the raw round trip is {f['arq_default_p50_ms']:.0f} ms (p50)."
        )
    if "runs_per_s" in f:
        ours, raw = f["runs_per_s"], f["arq_jobs_per_s"]
        runs = f.get("runs_count", 0.0)
        out.append(
            f"(b) No-op runs per second: {_aim(report, 'b')}. {ours:.1f} runs/s, "
            f"{ours / raw:.1%} of raw arq's {raw:,.0f} no-op jobs/s. A no-op run is an "
            "in-process task, so what is left is Aegir's own work per run: the POST "
            "(sign-in, validation, the run and its task rows, an audit row), the claim and "
            "plan, the events through the stream, the relay's transaction, the finish and "
            "the next-run lookup"
            + (", all on one SQLite writer" if report.database == "sqlite" else "")
            + f". Posting the {runs:.0f} runs took {f['runs_posting_s']:.1f} s of the "
            f"{f['runs_total_s']:.1f} s (POST p50 {f['runs_post_p50_ms']:.1f} ms, p95 "
            f"{f['runs_post_p95_ms']:.1f} ms"
            + (
                f"; {f['runs_post_errors']:.0f} POSTs were refused or dropped under this "
                "load and sent again, see Checks"
                if f.get("runs_post_errors")
                else "; none refused or dropped"
            )
            + f"). CPU per run: {_per_run(report.phase('(b) Aegir no-op runs'), runs)}."
        )
    if "log_db_s" in f:
        lines = f["log_db_stored"]
        read = f["log_last_read_s"] - f["log_first_read_s"]
        text = (
            f"(c) Log lines: {_aim(report, 'c')}. The worker read the command's lines from "
            f"{f['log_first_read_s']:.2f} s to {f['log_last_read_s']:.2f} s after the POST "
            f"({lines / read if read > 0 else 0:,.0f} lines/s out of the executor); the "
            f"database held them all (log_complete) at {f['log_db_s']:.2f} s, the websocket "
            f"subscriber had every seq at {f['log_ws_s']:.2f} s."
        )
        if f["log_db_s"] > 1.5 * f["log_last_read_s"]:
            text += (
                " So storing the lines (the relay's database transactions), not the "
                "executor or Redis, sets the pace."
            )
        if f["log_ws_large_messages"]:
            text += (
                f" Of {f['log_ws_messages']:.0f} websocket log messages, "
                f"{f['log_ws_large_messages']:.0f} held more than one relay batch: pages "
                "read back from the database. That is how the API feeds a tail once the "
                "run's end has been announced, and the worker announces it as soon as the "
                "command exits, long before the relay has stored a long log; from then on "
                "the subscriber trails the database."
            )
        text += (
            f" Lost: {f['log_lost']:.0f}; received twice: {f['log_ws_duplicates']:.0f}. The raw "
            "baseline writes one line per stream entry and stores nothing; Aegir sends up to "
            "500 lines per entry and commits them to the database before any subscriber sees "
            "them."
        )
        if not f.get("log_end_complete", 1.0):
            text += (
                " Anomaly: the websocket's end message said complete=false, although every "
                "line had been sent and the run's log_complete was true. The tail's 5 s wait "
                "for completeness (app/api/ws.py, _RunTail._finish) is checked against a run "
                "row read before a catch-up that itself took longer than 5 s."
            )
        out.append(text)
    if "first_line_p50_ms" in f and report.stages:
        slowest = max(report.stages.items(), key=lambda item: item[1])
        out.append(
            f"(d) Trigger → first log line: {_aim(report, 'd')}; p50 "
            f"{f['first_line_p50_ms']:.1f} ms, p95 {f['first_line_p95_ms']:.1f} ms, of "
            f"which the bare command's start is {f['subprocess_p50_ms']:.1f} ms (p50). The "
            f"longest stage is “{slowest[0]}” ({slowest[1]:.1f} ms median), see below; the "
            f"bare command takes {f['subprocess_p50_ms']:.1f} ms to start and exit."
        )
    out += [text for key, text in NEXT_STEPS.items() if _missed(report, key)]
    return out


def _missed(report: Report, key: str) -> bool:
    return any(f.key == key and f.met is False for f in report.figures)


# Where an aim is missed: what the profile (below) says, and what to do next.
NEXT_STEPS = {
    "a": "Next step for (a): the round trip is an HTTP request (sign-in from the cache, the "
    "entity and task read, the audit row committed), one LPUSH, the worker's BRPOP, its "
    "three reads of the task and entity, the reply and the BLPOP. What is left is "
    "SQLAlchemy's per-statement cost and the HTTP stack in the API process (see the "
    "profile): reading the entity and its task in one statement, and a worker that keeps "
    "the task values of entities it served (invalidated by the run requests that change "
    "them), would take 2 to 3 ms off.",
    "b": "Next step for (b): the profile shows the worker's time in SQLAlchemy and the "
    "driver (its claim, plan and finish: 2 transactions, 7 statements a run) and in Redis "
    "round trips (arq's job bookkeeping: about 6 per job, the events, the status "
    "publishes), and the API's in SQLAlchemy (the run request: operation, run, task rows, "
    "audit row). Each process is one Python thread on one core; the machine has 2 for "
    "everything, PostgreSQL included. In order: runs on a plain Redis queue as actions now "
    "are (idempotent by run id with a set, no arq job records: about 6 round trips less "
    "per run in the worker and 2 in the API); the claim, plan and finish as Core "
    "statements instead of ORM ones; more worker processes, which PostgreSQL allows and "
    "SQLite's one writer does not.",
    "c": "Next step for (c): the relay stores a batch of up to 10,000 lines in one "
    "transaction with one executemany; on SQLite it then pauses as long as the batch held "
    "the write lock, so that a worker's heartbeat is never starved. The end of a long log "
    "waits for those pauses: PostgreSQL (no pause) shows the relay's own pace. Next: "
    "several relays (entries are claimed per consumer) on PostgreSQL, and COPY instead of "
    "INSERT there.",
    "d": "Next step for (d): “claimed → first line” holds the command's start under its "
    "shepherd (executors/processes.py, issue 14's guarantee that a dead worker's commands "
    "die with it), a Python process of its own before the command's: a shepherd started "
    "once per worker that forks the commands would take most of the difference to the "
    "bare command away.",
}
