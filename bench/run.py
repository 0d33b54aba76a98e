"""sqlmigrate's benchmark: one command, its own corpora, its own tools, one server.

    python bench/run.py [--server URL] [--s1 500] [--s2-rows 100000] [--repeat 3]
                        [--only S1,S2,S3,S4,S5] [--big] [--tools sqlmigrate,floor,psql,dbmate,yoyo]

See bench/README.md for what each scenario measures and the targets it checks.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
VENV_PY = REPO / ".venv" / "bin" / "python"

try:
    import psycopg
    from psycopg import sql
except ImportError:  # run.py needs psycopg itself (to create and check databases): use the project venv
    if VENV_PY.exists() and Path(sys.prefix).resolve() != VENV_PY.parent.parent.resolve():
        os.execv(str(VENV_PY), [str(VENV_PY), __file__, *sys.argv[1:]])
    raise

sys.path.insert(0, str(BENCH))
import corpora  # noqa: E402
from tools import Run, Toolset, python_env, run_timed, setup  # noqa: E402

ALL_TOOLS = ("sqlmigrate", "floor", "psql", "dbmate", "yoyo")
HISTORY = {  # each tool's own history table, checked after every run
    "sqlmigrate": "schema_migrations",
    "floor": "bench_history",
    "psql": "bench_history",
    "dbmate": "schema_migrations",
    "yoyo": "_yoyo_migration",
}
DB_PREFIX = "smbench_"


# --------------------------------------------------------------------------------------------------
# databases


def db_url(server: str, dbname: str, *, dbmate: bool = False) -> str:
    parts = urlsplit(server)
    query = dict(parse_qsl(parts.query))
    if dbmate and "sslmode" not in query:
        query["sslmode"] = "disable"  # lib/pq (dbmate's driver) defaults to sslmode=require
    return urlunsplit((parts.scheme, parts.netloc, "/" + dbname, urlencode(query), ""))


class Server:
    def __init__(self, url: str) -> None:
        self.url = url
        self.admin = psycopg.connect(url, autocommit=True)
        self.version = self.admin.execute("SHOW server_version").fetchone()[0]

    def create(self, name: str) -> str:
        self.drop(name)
        self.admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return name

    def drop(self, name: str) -> None:
        self.admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )

    def drop_leftovers(self) -> None:
        rows = self.admin.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s", (DB_PREFIX + "%",)
        ).fetchall()
        for (name,) in rows:
            self.drop(name)

    def query(self, dbname: str, q: str) -> object:
        with psycopg.connect(db_url(self.url, dbname), autocommit=True) as c:
            return c.execute(q).fetchone()[0]


# --------------------------------------------------------------------------------------------------
# results


@dataclass
class Series:
    label: str
    runs: list[Run] = field(default_factory=list)
    failure: str = ""

    @property
    def times(self) -> list[float]:
        return [r.wall_s for r in self.runs if r.ok]

    @property
    def min(self) -> float | None:
        return min(self.times) if self.times else None

    @property
    def median(self) -> float | None:
        return statistics.median(self.times) if self.times else None

    @property
    def peak_rss_kb(self) -> int | None:
        rss = [r.maxrss_kb for r in self.runs if r.ok]
        return max(rss) if rss else None


@dataclass
class Scenario:
    key: str
    title: str
    series: dict[str, Series] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    targets: list[tuple[str, bool | None, str]] = field(default_factory=list)

    def s(self, tool: str) -> Series:
        return self.series.setdefault(tool, Series(tool))


def fmt_s(x: float | None) -> str:
    return "-" if x is None else f"{x:7.3f}"


def fmt_mb(kb: int | None) -> str:
    return "-" if kb is None else f"{kb / 1024:7.1f}"


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def fmt_r(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}x"


def print_scenario(sc: Scenario, ref: str = "sqlmigrate") -> None:
    print(f"\n== {sc.key}: {sc.title}")
    for n in sc.notes:
        print(f"   {n}")
    if sc.series:
        print(f"   {'tool':<26} {'min s':>7} {'median s':>8} {'peak MB':>7}  {ref + '/tool (median, min)':<30} runs (s)")
    r = sc.series.get(ref)
    for tool, s in sc.series.items():
        if s.failure and not s.times:
            print(f"   {s.label:<26} FAILED: {s.failure}")
            continue
        rr = ""
        if r is not None and tool != ref:
            rr = f"{fmt_r(ratio(r.median, s.median))}, {fmt_r(ratio(r.min, s.min))}"
        runs = " ".join(f"{x.wall_s:.3f}" + ("" if x.ok else "!") for x in s.runs)
        print(
            f"   {s.label:<26} {fmt_s(s.min)} {fmt_s(s.median):>8} {fmt_mb(s.peak_rss_kb)}  {rr:<30} {runs}"
        )
        if s.failure:
            print(f"   {'':<26} (some runs failed: {s.failure})")
    for name, met, detail in sc.targets:
        verdict = "n/a " if met is None else ("MET " if met else "MISS")
        print(f"   target {verdict} {name}: {detail}")
    sys.stdout.flush()


# --------------------------------------------------------------------------------------------------
# scenarios


class Bench:
    def __init__(self, args: argparse.Namespace, ts: Toolset, server: Server) -> None:
        self.args = args
        self.ts = ts
        self.server = server
        self.out = BENCH / "out"
        self.logs = self.out / "logs" / time.strftime("%Y%m%d-%H%M%S")
        self.env = python_env(BENCH)  # also fine for psql/dbmate/yoyo: no PG*/DATABASE_URL leaks in
        self.scenarios: list[Scenario] = []
        self.baseline_rss_kb: int | None = None

    def available(self, candidates: tuple[str, ...]) -> list[str]:
        wanted = set(self.args.tools)
        have = {"sqlmigrate": self.ts.sqlmigrate, "floor": str(self.ts.python), "psql": self.ts.psql,
                "dbmate": self.ts.dbmate, "yoyo": self.ts.yoyo}
        return [t for t in candidates if t in wanted and have[t]]

    def command(self, tool: str, corpus: corpora.Corpus, dbname: str, floor_mode: str) -> list[str]:
        url = db_url(self.server.url, dbname)
        py = str(self.ts.python)
        if tool == "sqlmigrate":
            return [py, "-m", "sqlmigrate", "up", "--dir", str(corpus.plain), "--database", url]
        if tool == "floor":
            return [py, str(BENCH / "floor.py"), floor_mode, url, str(corpus.plain)]
        if tool == "psql":
            return [self.ts.psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-f", str(corpus.psql_driver)]
        if tool == "dbmate":
            return [self.ts.dbmate, "--url", db_url(self.server.url, dbname, dbmate=True),
                    "--migrations-dir", str(corpus.dbmate), "--no-dump-schema", "migrate"]
        if tool == "yoyo":
            return [self.ts.yoyo, "apply", "--batch", "--no-config-file", "--database", url, str(corpus.plain)]
        raise ValueError(tool)

    def run(self, cmd: list[str], name: str, timeout: float | None = None) -> Run:
        return run_timed(cmd, self.logs / f"{name}.log", cwd=self.out, env=self.env,
                         timeout=timeout or self.args.timeout)

    # -- S1 / S2: apply a corpus with every tool, each run in a fresh database -------------------

    def apply_scenario(self, key: str, title: str, corpus: corpora.Corpus, tools: list[str],
                       floor_mode: str, verify_sql: str, expected: int, repeat: int) -> Scenario:
        sc = Scenario(key, title)
        for t in tools:
            sc.s(t)
        sc.series["floor"].label = "server floor (psycopg)" if "floor" in sc.series else "floor"
        print(f"\n-- {key}: {title}", flush=True)
        for rep in range(repeat):
            order = tools[rep % len(tools):] + tools[: rep % len(tools)]  # rotate: no tool always first
            for tool in order:
                s = sc.s(tool)
                if s.failure and not s.times:
                    continue  # failed every time so far: do not spend the timeout again
                dbname = self.server.create(f"{DB_PREFIX}{key.lower()}_{tool}_{rep}")
                r = self.run(self.command(tool, corpus, dbname, floor_mode), f"{key}-{tool}-{rep}")
                problem = ""
                if r.timed_out:
                    problem = f"timed out after {self.args.timeout:.0f} s"
                elif r.rc != 0:
                    problem = f"exit {r.rc}: {r.tail()}"
                else:
                    try:
                        got = self.server.query(dbname, verify_sql)
                        hist = self.server.query(dbname, f"SELECT count(*) FROM {HISTORY[tool]}")
                        if got != expected or hist != corpus.count:
                            problem = f"wrong result: {got} (want {expected}), {hist} history rows"
                    except psycopg.Error as e:
                        problem = f"wrong result: {str(e).strip().splitlines()[0]}"
                if problem:
                    r = Run(r.wall_s, r.maxrss_kb, r.rc or 99, r.timed_out, r.log)
                    s.failure = problem
                s.runs.append(r)
                self.server.drop(dbname)
                print(f"   rep {rep + 1} {tool:<10} {r.wall_s:8.3f} s  {r.maxrss_kb / 1024:7.1f} MB"
                      + (f"  FAILED {problem}" if problem else ""), flush=True)
        return sc

    def s1(self) -> None:
        n = self.args.s1
        c = corpora.small_corpus(self.out, n)
        tools = self.available(ALL_TOOLS)
        sc = self.apply_scenario(
            "S1", f"{n} small migrations (table, index, comment, 10-row insert), one transaction each",
            c, tools, "per-migration",
            "SELECT count(*) FROM pg_class WHERE relkind = 'r' AND relname LIKE 'item\\_%'", n,
            self.args.repeat)
        sc.notes.append(f"corpus {c.plain} ({c.sql_bytes / 1e6:.2f} MB of SQL); floor = psycopg, "
                        "per migration BEGIN / file / history INSERT / COMMIT (4 round trips)")
        sm = sc.series.get("sqlmigrate")
        rivals = [sc.series[t] for t in ("psql", "dbmate") if t in sc.series and sc.series[t].median]
        if sm and sm.median and rivals:
            best = min(rivals, key=lambda s: s.median)
            r = ratio(sm.median, best.median)
            sc.targets.append(("S1 <= 1.1x fastest of psql and dbmate", r <= 1.1,
                               f"{fmt_r(r)} of {best.label} (median {best.median:.3f} s)"))
        else:
            sc.targets.append(("S1 <= 1.1x fastest of psql and dbmate", None, "missing measurements"))
        print_scenario(sc)
        self.scenarios.append(sc)

    def s2(self, big: bool = False) -> None:
        if big:
            rows = corpora.rows_for_megabytes(self.args.big_mb)
            key, tools = "S2BIG", self.available(("sqlmigrate", "floor", "dbmate"))
        else:
            rows = self.args.s2_rows
            key, tools = "S2", self.available(ALL_TOOLS)
        c = corpora.bulk_corpus(self.out, rows)
        sc = self.apply_scenario(
            key, f"one {c.sql_bytes / 1e6:.1f} MB data migration of {rows:,} single-row INSERTs "
                 "(strings containing ';')",
            c, tools, "one-message", f"SELECT count(*) FROM {corpora.BULK_TABLE}", rows, self.args.repeat)
        sc.notes.append("floor = psycopg, the whole file as one simple-query message in one transaction")
        sm = sc.series.get("sqlmigrate")
        fl = sc.series.get("floor")
        if not big:
            if sm and fl and sm.median and fl.median:
                r = ratio(sm.median, fl.median)
                sc.targets.append(("S2 <= 1.1x the server's floor", r <= 1.1, f"{fmt_r(r)} (median)"))
            else:
                sc.targets.append(("S2 <= 1.1x the server's floor", None, "missing measurements"))
        self.rss_target(sc, c, enforce=big)
        print_scenario(sc)
        self.scenarios.append(sc)

    def baseline_rss(self) -> int | None:
        if self.baseline_rss_kb is None and self.ts.sqlmigrate:
            runs = [self.run([str(self.ts.python), "-c", "import sqlmigrate, psycopg"], f"baseline-{i}")
                    for i in range(3)]
            ok = [r.maxrss_kb for r in runs if r.ok]
            self.baseline_rss_kb = max(ok) if ok else None
        return self.baseline_rss_kb

    def rss_target(self, sc: Scenario, c: corpora.Corpus, *, enforce: bool) -> None:
        sm = sc.series.get("sqlmigrate")
        base = self.baseline_rss()
        if not (sm and sm.peak_rss_kb and base):
            sc.targets.append(("peak RSS", None, "missing measurements"))
            return
        limit_kb = 1.5 * c.sql_bytes / 1024 + base
        detail = (f"sqlmigrate peak {sm.peak_rss_kb / 1024:.1f} MB vs limit {limit_kb / 1024:.1f} MB "
                  f"(1.5 x {c.sql_bytes / 2**20:.1f} MiB file + baseline {base / 1024:.1f} MB of "
                  f"`python -c 'import sqlmigrate, psycopg'`); over baseline: "
                  f"{(sm.peak_rss_kb - base) / 1024:.1f} MB = {(sm.peak_rss_kb - base) * 1024 / c.sql_bytes:.2f}x the file")
        name = "peak RSS <= 1.5x file + baseline" + ("" if enforce else " (informational; the target is on --big)")
        sc.targets.append((name, sm.peak_rss_kb <= limit_kb if enforce else None, detail))

    # -- S3 / S4: read-only checks against an applied set -------------------------------------

    def applied_db(self, key: str, n: int) -> tuple[str, corpora.Corpus] | None:
        c = corpora.small_corpus(self.out, n)
        dbname = self.server.create(f"{DB_PREFIX}{key.lower()}")
        print(f"   setup: sqlmigrate up of {n} migrations ...", end=" ", flush=True)
        r = self.run(self.command("sqlmigrate", c, dbname, ""), f"{key}-setup", timeout=max(self.args.timeout, 1800))
        print(f"{r.wall_s:.1f} s" + ("" if r.ok else f" FAILED exit {r.rc}: {r.tail()}"), flush=True)
        if not r.ok:
            self.server.drop(dbname)
            return None
        return dbname, c

    def s3(self) -> None:
        n = self.args.s3
        sc = Scenario("S3", f"boot check, {n} migrations all applied, fresh interpreter each run")
        print(f"\n-- S3: {sc.title}", flush=True)
        if not self.ts.sqlmigrate:
            sc.targets.append(("S3 <= 1.3x bare psycopg interpreter", None, "sqlmigrate unavailable"))
            print_scenario(sc)
            self.scenarios.append(sc)
            return
        setup = self.applied_db("S3", n)
        if setup:
            dbname, c = setup
            url = db_url(self.server.url, dbname)
            py = str(self.ts.python)
            cmds = {
                "sqlmigrate": [py, "-c", "import sys, sqlmigrate; sqlmigrate.ensure_current(sys.argv[1], sys.argv[2])",
                               url, str(c.plain)],
                "bare psycopg": [py, "-c", "import sys, psycopg\nwith psycopg.connect(sys.argv[1]) as c:"
                                 " c.execute('SELECT 1').fetchone()", url],
                "import sqlmigrate": [py, "-c", "import sqlmigrate"],
                "python -c pass": [py, "-c", "pass"],
            }
            sc.series["sqlmigrate"] = Series("sqlmigrate ensure_current")
            names = list(cmds)
            reps = max(3 * self.args.repeat, 9)  # cheap runs: a few more of them steady the median
            for rep in range(reps):
                for name in names[rep % len(names):] + names[: rep % len(names)]:
                    r = self.run(cmds[name], f"S3-{name.replace(' ', '_')}-{rep}")
                    s = sc.s(name)
                    if not r.ok:
                        s.failure = f"exit {r.rc}: {r.tail()}"
                    s.runs.append(r)
            self.server.drop(dbname)
            sm, bare = sc.series["sqlmigrate"], sc.series["bare psycopg"]
            r = ratio(sm.median, bare.median)
            sc.targets.append(("S3 <= 1.3x bare psycopg interpreter", None if r is None else r <= 1.3,
                               f"{fmt_r(r)} (median)"))
        else:
            sc.targets.append(("S3 <= 1.3x bare psycopg interpreter", None, "setup failed"))
        print_scenario(sc)
        self.scenarios.append(sc)

    def s4(self) -> None:
        n = self.args.s4
        sc = Scenario("S4", f"`status` with {n} migrations all applied")
        print(f"\n-- S4: {sc.title}", flush=True)
        setup = self.applied_db("S4", n) if self.ts.sqlmigrate else None
        if setup:
            dbname, c = setup
            url = db_url(self.server.url, dbname)
            s = sc.s("sqlmigrate")
            s.label = "sqlmigrate status"
            for rep in range(max(3 * self.args.repeat, 9)):
                r = self.run([str(self.ts.python), "-m", "sqlmigrate", "status", "--dir", str(c.plain),
                              "--database", url], f"S4-status-{rep}")
                if not r.ok:
                    s.failure = f"exit {r.rc}: {r.tail()}"
                s.runs.append(r)
            self.server.drop(dbname)
            sc.targets.append(("S4 under 0.5 s", None if s.median is None else s.median < 0.5,
                               f"median {fmt_s(s.median).strip()} s"))
        else:
            sc.targets.append(("S4 under 0.5 s", None, "sqlmigrate unavailable or setup failed"))
        print_scenario(sc)
        self.scenarios.append(sc)

    # -- S5: delegated to bench_dataloss.py ------------------------------------------------------

    def s5(self) -> None:
        sc = Scenario("S5", "rollback data-presence check on a table of 5 million rows")
        print(f"\n-- S5: {sc.title}", flush=True)
        script = BENCH / "bench_dataloss.py"
        if not script.exists():
            sc.targets.append(("S5 under 0.2 s", None, f"{script.name} not present: skipped"))
        else:
            # Its interface: `bench_dataloss.py SERVER_URL`; one line per case,
            # "ok  <label> median N ms  max N ms  -> finding" or "FAIL ...", and exit 1 if any failed.
            r = self.run([str(self.ts.python), str(script), self.server.url], "S5-dataloss",
                         timeout=max(self.args.timeout, 1800))
            text = r.log.read_text(errors="replace").rstrip()
            sc.notes.append(f"{script.name} exit {r.rc} after {r.wall_s:.1f} s (table build included); its output:")
            sc.notes += ["  " + line for line in text.splitlines()[-40:]]
            cases = [ln for ln in text.splitlines() if ln.startswith(("ok  ", "FAIL"))]
            worst = [float(m.group(1)) for ln in cases if (m := re.search(r"max\s+([\d.]+) ms", ln))]
            fails = sum(ln.startswith("FAIL") for ln in cases)
            if not cases:
                sc.targets.append(("S5 under 0.2 s", None, f"no result lines (exit {r.rc})"))
            else:
                sc.targets.append((
                    "S5 under 0.2 s", fails == 0 and r.ok,
                    f"{len(cases) - fails}/{len(cases)} checks under 0.2 s in every run; "
                    f"slowest single run {max(worst):.1f} ms" if worst else f"{fails} FAIL lines"))
        print_scenario(sc)
        self.scenarios.append(sc)


    # -- S6: delegated to bench_verify.py --------------------------------------------------------

    def s6(self) -> None:
        sc = Scenario("S6", "verify of 200 migrations (functions, triggers, views, materialized views) vs up")
        print(f"\n-- S6: {sc.title}", flush=True)
        script = BENCH / "bench_verify.py"
        # Its interface: `bench_verify.py SERVER_URL --repeat N`; one line per run, then
        # "ok  ... verify/up N.Nx (target < 6x)" or "FAIL ...", exit 1 if missed.
        r = self.run([str(self.ts.python), str(script), self.server.url, "--repeat", str(self.args.repeat)],
                     "S6-verify", timeout=max(self.args.timeout, 1800))
        text = r.log.read_text(errors="replace").rstrip()
        sc.notes += ["  " + line for line in text.splitlines()[-(self.args.repeat + 1):]]
        last = text.splitlines()[-1] if text else ""
        m = re.search(r"verify/up ([\d.]+)x", last)
        sc.targets.append(("S6 verify < 6x up", bool(m) and r.ok and last.startswith("ok"),
                           last.strip() if m else f"no result line (exit {r.rc})"))
        print_scenario(sc)
        self.scenarios.append(sc)


# --------------------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--server", default=os.environ.get("SQLMIGRATE_BENCH_SERVER",
                                                      "postgresql://postgres@127.0.0.1:5432/postgres"),
                   help="a postgresql:// URL of a maintenance database; the bench creates and drops smbench_* databases")
    p.add_argument("--s1", type=int, default=500, help="S1: number of small migrations (500)")
    p.add_argument("--s2-rows", type=int, default=100_000, help="S2: rows in the data migration (100000)")
    p.add_argument("--s3", type=int, default=1000, help="S3: applied migrations for the boot check (1000)")
    p.add_argument("--s4", type=int, default=5000, help="S4: migrations for status (5000)")
    p.add_argument("--repeat", type=int, default=3, help="runs per tool (3); tool order rotates each repeat")
    p.add_argument("--only", default="S1,S2,S3,S4,S5,S6", help="comma-separated scenarios (S1,S2,S3,S4,S5,S6,S2BIG)")
    p.add_argument("--big", action="store_true", help="also run S2BIG: the S2 file scaled to --big-mb")
    p.add_argument("--big-mb", type=float, default=100.0, help="size of the S2BIG file in MiB (100)")
    p.add_argument("--tools", default=",".join(ALL_TOOLS), help="tools to compare (%(default)s)")
    p.add_argument("--python", default=str(VENV_PY), help="interpreter with sqlmigrate installed (project .venv)")
    p.add_argument("--timeout", type=float, default=600, help="seconds before one run is killed (600)")
    a = p.parse_args(argv)
    a.only = [x.strip().upper() for x in a.only.split(",") if x.strip()]
    if a.big and "S2BIG" not in a.only:
        a.only.append("S2BIG")
    a.tools = [x.strip() for x in a.tools.split(",") if x.strip()]
    if not urlsplit(a.server).scheme.startswith("postgres"):
        p.error("--server must be a postgresql:// URL")
    return a


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    (BENCH / "out").mkdir(exist_ok=True)
    print("sqlmigrate benchmark")
    server = Server(args.server)
    server.drop_leftovers()
    print(f"server: PostgreSQL {server.version} at {urlsplit(args.server).hostname}:{urlsplit(args.server).port or 5432}")
    print("tools:")
    ts = setup(BENCH, Path(args.python), set(args.tools))
    for k, v in ts.versions.items():
        print(f"  {k}: {v}")
    for k, why in ts.missing.items():
        print(f"  SKIPPED {k}: {why}")
    b = Bench(args, ts, server)
    started = time.time()
    for key in args.only:
        {"S1": b.s1, "S2": b.s2, "S2BIG": lambda: b.s2(big=True), "S3": b.s3, "S4": b.s4, "S5": b.s5, "S6": b.s6}[key]()

    print("\n" + "=" * 100)
    print(f"SUMMARY  PostgreSQL {server.version}; {ts.versions.get('python/psycopg', '')}; "
          f"repeat {args.repeat}; {time.time() - started:.0f} s")
    if b.baseline_rss_kb:
        print(f"baseline RSS of `python -c 'import sqlmigrate, psycopg'`: {b.baseline_rss_kb / 1024:.1f} MB")
    for sc in b.scenarios:
        print_scenario(sc)
    print("\nTARGETS")
    for sc in b.scenarios:
        for name, met, detail in sc.targets:
            print(f"  {'n/a ' if met is None else ('MET ' if met else 'MISS')} {name}: {detail}")
    result = {
        "server_version": server.version, "versions": ts.versions, "skipped": ts.missing,
        "args": {k: v for k, v in vars(args).items()}, "baseline_rss_kb": b.baseline_rss_kb,
        "scenarios": [{
            "key": sc.key, "title": sc.title, "targets": sc.targets,
            "series": {t: {"label": s.label, "times": [r.wall_s for r in s.runs], "ok": [r.ok for r in s.runs],
                           "maxrss_kb": [r.maxrss_kb for r in s.runs], "failure": s.failure}
                       for t, s in sc.series.items()},
        } for sc in b.scenarios],
    }
    path = BENCH / "out" / f"results-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=1))
    print(f"\nraw results: {path}\nlogs: {b.logs}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
