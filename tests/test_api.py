"""The public library surface: what ``sqlmigrate`` exports, its errors, and its result types."""

from __future__ import annotations

import importlib
import pickle
import pkgutil
from pathlib import Path

import pytest

import sqlmigrate
from sqlmigrate import _errors

# Constructor arguments for the errors whose constructor takes more than a message. Any other error
# is built as ``cls("message")``: a new class with a richer constructor fails here until it is added.
_SAMPLES: dict[str, tuple[tuple[object, ...], dict[str, object]]] = {
    "MigrationFileError": (("bad directive", Path("sql/0001_a.sql"), 3), {}),
    "OutOfOrderError": (("older than the newest", [2, 3]), {}),
    "MigrationError": (("relation \"a\" does not exist",),
                       {"path": Path("sql/0002_b.sql"), "line": 4, "statement": "SELECT * FROM a",
                        "sqlstate": "42P01", "detail": "d", "hint": "h", "context": "c"}),
    "NotCurrentError": (("database is not current",),
                        {"pending": [3], "modified": [1], "missing": [2], "failed": [4], "out_of_order": [5],
                         "renamed": [6]}),
    "DataLossError": (("would destroy data", ["DROP TABLE public.a: 3 rows (exact)"]), {}),
    "LintError": (("1 error-level finding", ["sql/0002_b.sql:1: error require-concurrent-index-creation"]), {}),
    "DatabaseError": (("could not read the history", "42P01"), {}),
    "PrivilegeError": (("permission denied for table schema_migrations", "42501"), {}),
}


def _all_error_classes() -> list[type[_errors.SqlMigrateError]]:
    # Import every module of the package, so that an error class defined anywhere is found.
    for info in pkgutil.iter_modules(sqlmigrate.__path__):
        if info.name not in ("__main__", "testing"):
            importlib.import_module(f"sqlmigrate.{info.name}")
    found: list[type[_errors.SqlMigrateError]] = []
    todo = [_errors.SqlMigrateError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


@pytest.mark.parametrize("cls", _all_error_classes(), ids=lambda c: c.__name__)
def test_every_error_survives_pickling_with_its_message_and_attributes(cls):
    args, kwargs = _SAMPLES.get(cls.__name__, (("something went wrong",), {}))
    error = cls(*args, **kwargs)
    if hasattr(error, "add_note"):  # Python 3.11+
        error.add_note("a note added on the way up")

    copy = pickle.loads(pickle.dumps(error))

    assert type(copy) is cls
    assert str(copy) == str(error)
    assert copy.args == error.args
    assert vars(copy) == vars(error)
    assert copy.exit_code == error.exit_code
    # Not only equal to the original: right, too (a constructor that re-renders its message would
    # double the "file:line:" prefix on the way back).
    if cls.__name__ == "MigrationFileError":
        assert str(copy) == "sql/0001_a.sql:3: bad directive"
        assert (copy.path, copy.line) == (Path("sql/0001_a.sql"), 3)
    if cls.__name__ == "OutOfOrderError":
        assert copy.versions == (2, 3)
    if cls.__name__ == "MigrationError":
        assert (copy.line, copy.sqlstate, copy.server_message) == (4, "42P01", 'relation "a" does not exist')


def test_the_error_samples_name_only_real_classes():
    names = {c.__name__ for c in _all_error_classes()}
    assert set(_SAMPLES) <= names


# -- the exported names ----------------------------------------------------------------------------------


def test_every_name_in_all_resolves_and_nothing_else_is_public():
    import sqlmigrate as package

    for name in package.__all__:
        assert getattr(package, name) is not None, name
    assert len(set(package.__all__)) == len(package.__all__)
    assert {n for n in dir(package) if not n.startswith("_")} == set(package.__all__)
    # and everything that loads lazily is in it (so `from sqlmigrate import *` and dir() list it)
    assert set(package._LAZY) <= set(package.__all__)
    namespace: dict[str, object] = {}
    exec("from sqlmigrate import *", namespace)
    assert set(namespace) - {"__builtins__"} == set(package.__all__)


def test_the_types_results_use_are_exported():
    expected = {"BaselineResult", "Baselined", "RepairResult", "Repaired", "Unresolved", "LogEntry",
                "VerifyReport", "MigrationReport", "Finding", "Status", "MigrationStatus", "State",
                "Result", "StepResult", "verify", "Migrator", "up", "ensure_current", "DatabaseError",
                "PrivilegeError"}
    assert expected <= set(sqlmigrate.__all__)
    assert callable(sqlmigrate.verify) and sqlmigrate.verify.__name__ == "verify"
    # every error class of the package is exported
    assert {c.__name__ for c in _all_error_classes()} <= set(sqlmigrate.__all__)


def test_import_stays_cheap_and_exported_names_load_on_first_use():
    import subprocess
    import sys

    code = ("import sys, sqlmigrate\n"
            "heavy = ('psycopg', 'sqlparse', 'sqlalchemy')\n"
            "print(sorted(m for m in heavy if m in sys.modules))\n"
            "sqlmigrate.VerifyReport, sqlmigrate.LogEntry, sqlmigrate.RepairResult\n"
            "print('sqlparse' in sys.modules, 'sqlalchemy' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["[]", "False False"]


# -- specific errors, never the bare base class -------------------------------------------------------


def test_the_package_never_raises_the_bare_base_class():
    package = Path(sqlmigrate.__file__).parent
    bare = [f"{p.name}:{n}" for p in sorted(package.glob("*.py"))
            for n, line in enumerate(p.read_text().splitlines(), 1) if "raise SqlMigrateError(" in line]
    assert bare == []


def test_data_loss_check_on_a_failed_transaction_is_a_configuration_error(database_url):
    import psycopg

    from sqlmigrate._dataloss import find_data_loss

    with psycopg.connect(database_url) as c:
        with pytest.raises(psycopg.Error):
            c.execute("SELECT 1/0")
        with pytest.raises(sqlmigrate.ConfigurationError, match="transaction has failed") as caught:
            find_data_loss(c, [("DROP TABLE users", 1)])
    assert caught.value.exit_code == 2


def test_data_loss_check_on_a_lost_connection_is_a_database_error(database_url, conn):
    import psycopg

    from sqlmigrate._dataloss import find_data_loss

    conn.execute("CREATE TABLE users (id int)")
    with psycopg.connect(database_url, autocommit=True) as c:
        conn.execute("SELECT pg_terminate_backend(%s)", (c.info.backend_pid,))
        with pytest.raises(sqlmigrate.DatabaseError, match="data-loss check failed") as caught:
            find_data_loss(c, [("DROP TABLE users", 1)])
    assert not isinstance(caught.value, sqlmigrate.MigrationError)


def test_verify_that_cannot_create_its_database_raises_a_database_error(server_url, database_url, mdir):
    """A role whose every transaction is read-only: CREATE DATABASE fails with SQLSTATE 25006."""
    import uuid

    import psycopg
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    from sqlmigrate._verify import verify

    mdir.write("0001_a.sql", "CREATE TABLE a (id int);\n")
    mdir.write("0001_a.rollback.sql", "DROP TABLE a;\n")
    role = f"sqlmigrate_ro_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEDB PASSWORD 'pw'").format(sql.Identifier(role)))
        admin.execute(sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on")
                      .format(sql.Identifier(role)))
        try:
            with pytest.raises(sqlmigrate.DatabaseError, match="could not create the throwaway database") as caught:
                verify(make_conninfo(database_url, user=role, password="pw"), mdir.path)
            assert caught.value.sqlstate == "25006"
        finally:
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


# -- SQLAlchemy engines and URLs, without importing SQLAlchemy otherwise --------------------------------


def _sqlalchemy_url(database_url: str, user: str, password: str, driver: str = "postgresql+psycopg2"):
    import sqlalchemy
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(database_url)
    host, port = params.get("host"), str(params.get("port") or 5432)
    if host and host.startswith("/"):  # a Unix socket: SQLAlchemy takes its directory as ?host=
        return sqlalchemy.URL.create(driver, username=user, password=password, database=params["dbname"],
                                     query={"host": host, "port": port})
    return sqlalchemy.URL.create(driver, username=user, password=password, host=host, port=int(port),
                                 database=params["dbname"])


@pytest.fixture
def odd_role(server_url):
    """A role whose password needs escaping in a URL (the server trusts it anyway: the password is
    checked by parsing, the user by connecting)."""
    import uuid

    import psycopg
    from psycopg import sql

    role = f"sqlmigrate_sa_{uuid.uuid4().hex[:8]}"
    password = "p@ss:w/rd%?&="
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN SUPERUSER PASSWORD {}").format(
            sql.Identifier(role), sql.Literal(password)))
        try:
            yield role, password
        finally:
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


@pytest.mark.parametrize("driver", ["postgresql+psycopg2", "postgresql+psycopg", "postgresql"])
def test_conninfo_of_a_sqlalchemy_engine_and_url_connects(database_url, odd_role, driver):
    import sqlalchemy
    from psycopg.conninfo import conninfo_to_dict

    from sqlmigrate._connection import conninfo_of, connect

    role, password = odd_role
    url = _sqlalchemy_url(database_url, role, password, driver)
    # An engine needs its driver installed: psycopg2 is not (only its URL spelling matters here).
    engine = sqlalchemy.create_engine(url) if driver != "postgresql+psycopg2" else None
    try:
        for given in (url, engine or url, url.render_as_string(hide_password=False)):
            conninfo = conninfo_of(given)
            assert conninfo_to_dict(conninfo)["password"] == password
            with connect(conninfo) as c:
                row = c.execute("SELECT current_user, current_database()").fetchone()
            assert row == (role, conninfo_to_dict(database_url)["dbname"])
    finally:
        if engine is not None:
            engine.dispose()


def test_conninfo_of_anything_else_is_a_configuration_error_naming_its_type(tmp_path):
    import sqlalchemy

    from sqlmigrate._connection import conninfo_of

    with pytest.raises(sqlmigrate.ConfigurationError, match=r"pathlib\.PosixPath") as caught:
        conninfo_of(tmp_path)
    assert caught.value.exit_code == 2
    with pytest.raises(sqlmigrate.ConfigurationError, match=r"builtins\.int"):
        conninfo_of(5432)
    with pytest.raises(sqlmigrate.ConfigurationError, match=r"mysql\+pymysql.*PostgreSQL") as caught:
        conninfo_of(sqlalchemy.make_url("mysql+pymysql://u:secret@db/app"))
    assert "secret" not in str(caught.value)


def test_a_string_never_imports_sqlalchemy(database_url, mdir):
    import subprocess
    import sys

    mdir.write("0001_a.sql", "CREATE TABLE a (id int);\n")
    code = (
        "import sys, sqlmigrate\n"
        f"result = sqlmigrate.Migrator({database_url!r}, {str(mdir.path)!r}).up()\n"
        "assert len(result.steps) == 1, result\n"
        "print('sqlalchemy' in sys.modules, any(m.startswith('sqlalchemy') for m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "False"]


# -- results: as_dict() on every one of them ------------------------------------------------------------


def test_every_exported_result_type_has_as_dict():
    import dataclasses

    results = [name for name in sqlmigrate.__all__ if dataclasses.is_dataclass(getattr(sqlmigrate, name))]
    assert {"Status", "MigrationStatus", "BaselineResult", "RepairResult", "LogEntry", "VerifyReport",
            "MigrationReport", "Finding", "Result", "StepResult"} <= set(results)
    assert [name for name in results if not callable(getattr(getattr(sqlmigrate, name), "as_dict", None))] == []


def test_every_result_as_dict_is_json(database_url, conn, mdir):
    import json
    from datetime import datetime

    from sqlmigrate._dataloss import find_data_loss

    mdir.write("0001_users.sql", "CREATE TABLE users (id int);\nINSERT INTO users VALUES (1), (2);\n")
    mdir.write("0001_users.rollback.sql", "DROP TABLE users;\n")
    mdir.write("0002_index.sql", "-- sqlmigrate: no-transaction\n"
                                 "CREATE INDEX CONCURRENTLY users_id ON users (id);\nSELECT 1/0;\n")
    with pytest.raises(sqlmigrate.MigrationError):
        sqlmigrate.up(database_url, mdir.path)
    m = sqlmigrate.Migrator(database_url, mdir.path)

    def dumped(value: object, cls: type) -> dict:
        assert isinstance(value, cls)
        return json.loads(json.dumps(value.as_dict()))  # type: ignore[attr-defined]

    status = dumped(m.status(), sqlmigrate.Status)
    assert (status["current"], status["failed"]) == (False, [2])
    entry = dumped(m.status().entries[0], sqlmigrate.MigrationStatus)
    assert (entry["state"], entry["version"]) == ("applied", 1)
    datetime.fromisoformat(entry["applied_at"])

    left = dumped(m.repair(), sqlmigrate.RepairResult)
    assert left["repaired"] == [] and left["unresolved"][0]["version"] == 2
    assert "repair --applied 2" in left["unresolved"][0]["guidance"]
    done = dumped(m.repair(mark_applied=[2]), sqlmigrate.RepairResult)
    assert [(r["version"], r["action"]) for r in done["repaired"]] == [(2, "applied")]

    baseline = dumped(sqlmigrate.Migrator(database_url, mdir.path, table="other_history").baseline(1),
                      sqlmigrate.BaselineResult)
    assert [b["version"] for b in baseline["recorded"]] == [1] and baseline["kept"] == []

    entries = m.log()
    assert entries
    for e in entries:
        as_json = dumped(e, sqlmigrate.LogEntry)
        datetime.fromisoformat(as_json["started_at"])
    assert {(e["direction"], e["outcome"]) for e in map(lambda x: x.as_dict(), entries)} >= {
        ("up", "ok"), ("up", "failed"), ("repair", "ok")}

    (finding,) = find_data_loss(conn, [("DROP TABLE users", 1)])
    lost = dumped(finding, sqlmigrate.Finding)
    assert (lost["object"], lost["rows"], lost["estimated"]) == ("public.users", 2, False)

    mdir.write("0002_index.sql", "SELECT 1;\n")  # verify needs a set that applies
    report = sqlmigrate.verify(database_url, mdir.path)
    as_json = dumped(report, sqlmigrate.VerifyReport)
    assert [r["label"] for r in as_json["migrations"]] == ["0001_users", "0002_index"]
    dumped(report.migrations[0], sqlmigrate.MigrationReport)


def test_up_and_status_take_a_sqlalchemy_engine_and_url(database_url, conn, mdir):
    import sqlalchemy
    from psycopg.conninfo import conninfo_to_dict

    p = conninfo_to_dict(database_url)
    url = _sqlalchemy_url(database_url, p["user"], p.get("password") or "", "postgresql+psycopg")
    engine = sqlalchemy.create_engine(url)
    try:
        mdir.write("0001_a.sql", "CREATE TABLE a (id int);\n")
        result = sqlmigrate.up(engine, mdir.path)
        assert [s.label for s in result.steps] == ["0001_a"]
        assert sqlmigrate.Migrator(url, mdir.path).check().current
        assert conn.execute("SELECT to_regclass('a') IS NOT NULL").fetchone() == (True,)
    finally:
        engine.dispose()
