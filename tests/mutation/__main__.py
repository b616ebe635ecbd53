"""`make mutate`: mutation testing of the modules that hold the cold-start and security protections.

For each module in tests/mutation/modules.toml, cosmic-ray makes one small change at a time (a comparison
flipped, a number moved by one, a condition negated, a loop that runs zero times...) in the file on disk, and
runs the tests that name the module's scenarios plus the module's own tests against it. A mutant the tests fail
on is killed; one they pass on survived: either a test is missing, or the mutant is equivalent (behaves the same)
and is listed, with the reason, under [[equivalent]] in the configuration. docs/TESTING.md explains more.

    python -m tests.mutation                       # every module
    python -m tests.mutation config ratelimit      # some modules, by name
    python -m tests.mutation --list                # modules, their tests and mutant counts; runs nothing
    python -m tests.mutation --resume config       # continue an interrupted session
    python -m tests.mutation --survivors config    # after adding tests: run again what survived last time

Mutation happens in place (cosmic-ray's way, so test subprocesses see the mutant): the runner keeps the original
text and writes it back when it ends, also on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import shlex
import signal
import sys
import tempfile
import time
import tomllib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cosmic_ray.ast import ast_nodes, get_ast_from_path
from cosmic_ray.ast.ast_query import ASTQuery
from cosmic_ray.modules import find_modules
from cosmic_ray.mutating import mutate_and_test, mutate_code
from cosmic_ray.plugins import get_operator
from cosmic_ray.testing import run_tests
from cosmic_ray.work_db import WorkDB, use_db
from cosmic_ray.work_item import MutationSpec, TestOutcome, WorkerOutcome, WorkItem, WorkResult

from shared.config import REPO_ROOT
from tests.scenario_map import scenario_tests

CONFIG = Path(__file__).with_name("modules.toml")


@dataclass
class Module:
    name: str
    paths: list[str]
    scenarios: list[int]
    tests: list[str]
    scenario_tests_in: list[str] = field(default_factory=list)  # only scenario tests under these folders
    definitions: list[str] = field(default_factory=list)  # only mutants inside these functions, when given
    timeout_s: float | None = None


@dataclass
class Equivalent:
    path: str
    operator: str
    line: str  # text the original source line contains
    becomes: str  # text the mutated line contains
    why: str
    used: int = 0


@dataclass
class Config:
    modules: list[Module]
    operators: list[str]
    equivalents: list[Equivalent]
    timeout_factor: float
    timeout_min_s: float
    pytest_args: list[str] = field(default_factory=list)


def load_config(path: Path = CONFIG) -> Config:
    raw = tomllib.loads(path.read_text())
    run = raw["run"]
    modules = [
        Module(
            m["name"],
            m["paths"],
            m.get("scenarios", []),
            m.get("tests", []),
            m.get("scenario_tests_in", []),
            m.get("definitions", []),
            m.get("timeout_s"),
        )
        for m in raw["module"]
    ]
    equivalents = [
        Equivalent(e["path"], e["operator"], e["line"], e["becomes"], e["why"]) for e in raw.get("equivalent", [])
    ]
    for e in equivalents:
        if not e.why.strip():
            raise SystemExit(f"modules.toml: the equivalent mutant at {e.path} ({e.line!r}) needs a reason (why)")
    return Config(
        modules, run["operators"], equivalents, run["timeout_factor"], run["timeout_min_s"], run["pytest_args"]
    )


def selected_tests(module: Module) -> list[str]:
    """The module's own tests first (fast, most direct), then the tests named after its scenarios."""
    by_scenario = scenario_tests()
    chosen = list(module.tests)
    for number in module.scenarios:
        if number not in by_scenario:
            raise SystemExit(f"{module.name}: scenario {number} has no test named test_scenario_{number}_...")
        chosen += [
            t
            for t in by_scenario[number]
            if not module.scenario_tests_in or t.startswith(tuple(module.scenario_tests_in))
        ]
    whole_files = {t for t in chosen if "::" not in t}
    result: list[str] = []
    for test in chosen:
        if test in result or test.split("::")[0] in whole_files and "::" in test:
            continue
        if not (REPO_ROOT / test.split("::")[0]).exists():
            raise SystemExit(f"{module.name}: no such test file {test}")
        result.append(test)
    return result


def test_command(config: Config, module: Module) -> str:
    basetemp = REPO_ROOT / ".local" / "mutation" / f"pytest-{module.name}"
    argv = [sys.executable, "-m", "pytest", *config.pytest_args, f"--basetemp={basetemp}", *selected_tests(module)]
    return shlex.join(argv)


def module_files(module: Module) -> list[Path]:
    files = sorted(find_modules([REPO_ROOT / p for p in module.paths]))
    return [f.relative_to(REPO_ROOT) for f in files]


def mutated_line(item: WorkItem, strip: bool = True) -> tuple[int, str, str]:
    """(line number, original line, mutated line) of a single-mutation work item; ``strip=False`` keeps the
    original line's indentation (an [[equivalent]] entry may use it to pick one of two identical statements)."""
    mutation = item.mutations[0]
    source = (REPO_ROOT / mutation.module_path).read_text()
    operator = get_operator(mutation.operator_name)(**(mutation.operator_args or {}))
    mutated = mutate_code(source, operator, mutation.occurrence) or source
    line = mutation.start_pos[0]
    before, after = source.splitlines(), mutated.splitlines()
    old = before[line - 1] if line <= len(before) else ""
    new = after[line - 1] if line <= len(after) else ""
    if len(before) != len(after):  # a mutation that adds or removes lines (a decorator): show the change
        diff = difflib.unified_diff(before, after, lineterm="", n=0)
        changed = [d for d in diff if d[:1] in "+-" and not d.startswith(("---", "+++")) and d[1:].strip()]
        new = " / ".join(changed) or new
    return line, (old.strip() if strip else old), new.strip()


def equivalent_for(config: Config, item: WorkItem) -> Equivalent | None:
    mutation = item.mutations[0]
    candidates = [
        e for e in config.equivalents if str(mutation.module_path) == e.path and mutation.operator_name == e.operator
    ]
    if not candidates:
        return None
    _, old, new = mutated_line(item, strip=False)
    for e in candidates:
        if e.line in old and e.becomes in new:
            return e
    return None


def work_items(config: Config, module: Module) -> Iterator[WorkItem]:
    """One work item per mutant of the configured operators (cosmic-ray's own init makes every operator's
    mutants and filters later: several times slower on these files)."""
    for path in module_files(module):
        tree = get_ast_from_path(REPO_ROOT / path)
        for name in config.operators:
            operator_name = f"core/{name}"
            operator = get_operator(operator_name)()
            positions = (
                (node, start, end) for node in ast_nodes(tree) for start, end in operator.mutation_positions(node)
            )
            for occurrence, (node, start, end) in enumerate(positions):
                definition = ASTQuery(node).get_definition_name()
                if module.definitions and definition not in module.definitions:
                    continue
                spec = MutationSpec(str(path), operator_name, occurrence, start, end, {}, definition)
                yield WorkItem.single(uuid.uuid4().hex, spec)


def initialise(config: Config, module: Module, db: WorkDB) -> None:
    """A fresh session: every mutant of the module's files; listed equivalent mutants are recorded as skipped."""
    db.clear()
    db.add_work_items(work_items(config, module))
    for item in list(db.pending_work_items):
        equivalent = equivalent_for(config, item)
        if equivalent is not None:
            equivalent.used += 1
            db.set_result(
                item.job_id, WorkResult(worker_outcome=WorkerOutcome.SKIPPED, output=f"equivalent: {equivalent.why}")
            )


def baseline(command: str, timeout_s: float) -> float:
    started = time.monotonic()
    outcome, output = run_tests(command, timeout_s)
    if outcome is not TestOutcome.SURVIVED:
        raise SystemExit(f"the tests fail without any mutation; fix them first:\n{output[-3000:]}")
    return time.monotonic() - started


@dataclass
class Score:
    module: str
    total: int = 0
    killed: int = 0
    survived: list[str] = field(default_factory=list)
    equivalent: int = 0
    not_run: int = 0

    @property
    def score(self) -> float | None:
        tested = self.killed + len(self.survived)
        return None if tested == 0 else self.killed / tested


def summarise(module: Module, db: WorkDB) -> Score:
    score = Score(module.name)
    results = dict(db.results)
    for item in db.work_items:
        result = results.get(item.job_id)
        if result is None:
            score.not_run += 1
            continue
        if result.worker_outcome is WorkerOutcome.SKIPPED:
            if (result.output or "").startswith("equivalent"):
                score.equivalent += 1
            continue
        score.total += 1
        if result.test_outcome is TestOutcome.SURVIVED:
            line, old, new = mutated_line(item)
            mutation = item.mutations[0]
            score.survived.append(
                f"{mutation.module_path}:{line} {mutation.operator_name}\n      - {old}\n      + {new}"
            )
        else:
            score.killed += 1
    return score


def _fingerprint(module: Module) -> str:
    digest = hashlib.sha256()
    for path in module_files(module):
        digest.update(str(path).encode() + b"\0" + (REPO_ROOT / path).read_bytes())
    return digest.hexdigest()


def _pending(config: Config, module: Module, db: WorkDB, mode: str) -> list[WorkItem]:
    """What to run: every mutant (fresh), those without a result (resume), or those that survived last time
    (survivors: after adding tests). In resume and survivors mode, entries listed as equivalent since the session
    was made are recorded as such first, not run (each would run every test of the module to survive)."""
    if mode == "fresh":
        return list(db.pending_work_items)
    if mode == "resume":
        candidates = list(db.pending_work_items)
    else:
        candidates = [
            item
            for item, result in db.completed_work_items
            if result.test_outcome is TestOutcome.SURVIVED and result.worker_outcome is not WorkerOutcome.SKIPPED
        ]
    items = []
    for item in candidates:
        equivalent = equivalent_for(config, item)
        if equivalent is not None:
            equivalent.used += 1
            db.set_result(
                item.job_id, WorkResult(worker_outcome=WorkerOutcome.SKIPPED, output=f"equivalent: {equivalent.why}")
            )
        else:
            items.append(item)
    return items


def run_module(config: Config, module: Module, mode: str, stream: Any = sys.stdout) -> Score:
    """``mode``: "fresh", "resume" or "survivors" (see _pending)."""
    session = REPO_ROOT / ".local" / "mutation" / f"{module.name}.sqlite"
    stamp = session.with_suffix(".fingerprint")
    session.parent.mkdir(parents=True, exist_ok=True)
    if mode != "fresh":
        if not session.exists() or not stamp.exists():
            raise SystemExit(f"{module.name}: no earlier session to {mode}; run without --{mode} first")
        if stamp.read_text() != _fingerprint(module):
            # The mutants are addressed by position: a changed file would get different ones.
            raise SystemExit(f"{module.name}: the module changed since its session was made; run it afresh")
    else:
        session.unlink(missing_ok=True)
    command = test_command(config, module)
    originals = {f: (REPO_ROOT / f).read_text() for f in module_files(module)}
    with use_db(str(session)) as db:
        if mode == "fresh":
            initialise(config, module, db)
            stamp.write_text(_fingerprint(module))
        pending = _pending(config, module, db, mode)
        took = baseline(command, 1800)
        timeout = module.timeout_s or max(config.timeout_min_s, took * config.timeout_factor)
        print(
            f"[{module.name}] {len(pending)} mutants to run; baseline {took:.1f} s, timeout {timeout:.0f} s",
            file=stream,
        )
        try:
            for number, item in enumerate(pending, 1):
                started = time.monotonic()
                result = mutate_and_test(item.mutations, command, timeout)
                db.set_result(item.job_id, result)
                mutation = item.mutations[0]
                outcome = result.test_outcome.value if result.test_outcome else result.worker_outcome.value
                print(
                    f"[{module.name}] {number}/{len(pending)} {outcome:<9} "
                    f"{mutation.module_path}:{mutation.start_pos[0]} {mutation.operator_name} "
                    f"({time.monotonic() - started:.1f} s)",
                    file=stream,
                    flush=True,
                )
        finally:
            for path, text in originals.items():  # cosmic-ray restores too; this also covers a hard interrupt
                if (REPO_ROOT / path).read_text() != text:
                    (REPO_ROOT / path).write_text(text)
        return summarise(module, db)


def report(scores: list[Score], stream: Any = sys.stdout) -> None:
    print("\nmodule            score    killed survived equivalent not-run", file=stream)
    for s in scores:
        value = "n/a" if s.score is None else f"{s.score:.1%}"
        print(
            f"{s.module:<17} {value:>7} {s.killed:>8} {len(s.survived):>8} {s.equivalent:>10} {s.not_run:>7}",
            file=stream,
        )
    for s in scores:
        if s.survived:
            print(
                f"\nsurvivors in {s.module} (a test is missing, or the mutant is equivalent: see docs/TESTING.md):",
                file=stream,
            )
            for survivor in s.survived:
                print(f"  {survivor}", file=stream)


def list_modules(config: Config, modules: list[Module]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for module in modules:
            with use_db(str(Path(tmp) / f"{module.name}.sqlite")) as db:
                initialise(config, module, db)
                pending = sum(1 for _ in db.pending_work_items)
            print(f"{module.name}: {', '.join(map(str, module_files(module)))} ({pending} mutants to run)")
            print(f"  tests: {' '.join(selected_tests(module))}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.mutation", description=__doc__.split("\n")[0])
    parser.add_argument("modules", nargs="*", help="module names from tests/mutation/modules.toml (default: all)")
    parser.add_argument("--list", action="store_true", help="show modules and their tests; run nothing")
    again = parser.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue the last session of each module")
    again.add_argument(
        "--survivors", action="store_true", help="run again only the mutants that survived last time (after new tests)"
    )
    args = parser.parse_args(argv)
    config = load_config()
    known = {m.name: m for m in config.modules}
    unknown = [n for n in args.modules if n not in known]
    if unknown:
        parser.error(f"unknown module(s) {', '.join(unknown)}; known: {', '.join(known)}")
    chosen = [known[n] for n in args.modules] if args.modules else config.modules
    if args.list:
        list_modules(config, chosen)
        return 0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks that restore the files
    mode = "resume" if args.resume else "survivors" if args.survivors else "fresh"
    scores = [run_module(config, module, mode) for module in chosen]
    report(scores)
    # Only a fresh session sees every mutant; --resume and --survivors see a part, so an entry may match none.
    unused = [
        e
        for e in config.equivalents
        if mode == "fresh" and e.used == 0 and any(e.path in map(str, module_files(m)) for m in chosen)
    ]
    for e in unused:
        print(f"\nnote: the equivalent-mutant entry {e.path} {e.line!r} matched no mutant: remove or update it")
    return 1 if any(s.survived for s in scores) else 0


if __name__ == "__main__":
    sys.exit(main())
