"""Bringing the history in line with reality: ``baseline`` and ``repair``.

Both run under the migration lock (the caller holds it), write the history and their log rows in one
transaction, and never delete a history row except the one of a failed no-transaction migration the
user explicitly asked to retry.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from psycopg import sql

from ._errors import ConfigurationError, HistoryError
from ._plan import MigrationStatus, State, compute, describe_failure, renamed_remedy

if TYPE_CHECKING:
    import psycopg

    from ._files import Migration
    from ._history import History
    from ._session import Session

log = logging.getLogger("sqlmigrate")


@dataclass(frozen=True)
class Baselined:
    """One migration recorded as applied without running it."""

    version: int
    name: str
    label: str
    checksum: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class BaselineResult:
    version: int
    recorded: tuple[Baselined, ...]
    #: versions at or below ``version`` that were already in the history and were kept as they are
    kept: tuple[int, ...] = ()

    def __len__(self) -> int:
        return len(self.recorded)

    def as_dict(self) -> dict[str, Any]:
        return {"version": self.version, "recorded": [b.as_dict() for b in self.recorded],
                "kept": list(self.kept)}


@dataclass(frozen=True)
class Repaired:
    """One change ``repair`` made: ``action`` is "checksum", "applied", "retry" or "renamed"."""

    version: int
    label: str
    action: str
    old_checksum: str | None
    new_checksum: str | None
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Unresolved:
    """An applied migration ``repair`` left alone because nobody said how to resolve it: a
    no-transaction migration that stopped part way (``reason`` "failed"), or one whose file now has
    another name (``reason`` "renamed")."""

    version: int
    label: str
    description: str
    #: the commands that resolve it, and when to use which
    guidance: str
    reason: str = "failed"

    @property
    def message(self) -> str:
        if self.reason == "renamed":
            return (f"version {self.version} was {self.description}. It was left as it is: repair never "
                    f"adopts a file of another name on its own.\n  {self.guidance}")
        return (f"{self.label} stopped part way and was left as it is: {self.description}.\n"
                f"  To resolve it, {self.guidance}")

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "message": self.message}


@dataclass(frozen=True)
class RepairResult:
    repaired: tuple[Repaired, ...]
    unresolved: tuple[Unresolved, ...] = ()

    def __len__(self) -> int:
        return len(self.repaired)

    def as_dict(self) -> dict[str, Any]:
        return {"repaired": [r.as_dict() for r in self.repaired],
                "unresolved": [u.as_dict() for u in self.unresolved]}


def resolution_commands(version: int) -> str:
    return (f"if you completed its remaining statements by hand, run "
            f"`sqlmigrate repair --applied {version}` to record it as applied; if you undid what it did, "
            f"run `sqlmigrate repair --retry {version}` so that `up` runs it again from its first statement")


# -- baseline -------------------------------------------------------------------------------------


def baseline(session: Session, migrations: Sequence[Migration], version: int,
             *, force: bool = False) -> BaselineResult:
    """Record every migration file with a version <= ``version`` as applied, without running it.

    Refused when the history already has rows (the database is not one "built by other means"), unless
    ``force``: then only the versions missing from the history are added and no row is changed.
    """
    conn, history = session.conn, session.history
    rows = history.rows(conn)
    if rows and not force:
        newest = max(r.version for r in rows)
        raise HistoryError(
            f"{history.display} already has history ({len(rows)} migration(s) recorded, newest {newest}); "
            "baseline is for a database whose tables were built by other means and that has no history "
            "yet. Use `sqlmigrate status` to see what is recorded; to add the versions up to "
            f"{version} that are missing from it anyway, run `sqlmigrate baseline {version} --force` "
            "(it never changes or deletes existing rows)"
        )
    targets = [m for m in migrations if m.version <= version]
    if not targets:
        raise ConfigurationError(
            f"nothing to baseline: no migration file has a version at or below {version}; "
            "give the version of the newest migration the database already contains"
        )
    existing = {r.version for r in rows}
    todo = [m for m in targets if m.version not in existing]
    kept = tuple(m.version for m in targets if m.version in existing)
    detail = f"baseline up to {version}{' (forced onto existing history)' if force and rows else ''}: " \
             "recorded as applied without running it"
    statements = [
        sql.SQL(
            "INSERT INTO {history} (version, name, checksum, applied_at, execution_ms, state, baseline,"
            " out_of_order) VALUES ({version}, {name}, {checksum}, now(), 0, 'applied', true, false);"
        ).format(history=history.ident, version=sql.Literal(m.version), name=sql.Literal(m.name),
                 checksum=sql.Literal(m.checksum))
        + history.log_row(version=m.version, name=m.name, direction="baseline", outcome="ok",
                          checksum=m.checksum, detail=detail, execution_ms=0)
        for m in todo
    ]
    _write(session, statements)
    for m in todo:
        log.info("baseline: recorded %s as applied without running it", m.label)
    if kept:
        log.info("baseline: kept the existing history of version(s) %s", ", ".join(map(str, kept)))
    if not todo:
        log.info("baseline: every migration up to %s is already in %s; nothing recorded",
                 version, history.display)
    return BaselineResult(version, tuple(Baselined(m.version, m.name, m.label, m.checksum) for m in todo),
                          kept)


# -- repair ---------------------------------------------------------------------------------------


def repair(session: Session, migrations: Sequence[Migration],
           versions: Iterable[int] | None = None, *, mark_applied: Iterable[int] = (),
           retry: Iterable[int] = (), accept_renamed: Iterable[int] = ()) -> RepairResult:
    """Accept the current checksum of modified migrations and resolve failed no-transaction ones.

    - ``versions``: accept the current checksum of these modified migrations. ``None`` with no
      ``mark_applied``/``retry``: every modified migration.
    - ``mark_applied``: failed no-transaction migrations the user finished by hand: recorded as applied.
    - ``retry``: failed no-transaction migrations the user undid: their row is deleted, so ``up``
      runs them again from the first statement.
    - ``accept_renamed``: applied versions whose file now has another name, which the user says is
      the migration that ran, renamed: the history takes the file's name and checksum.

    A failed or renamed migration is never resolved implicitly: without ``mark_applied``/``retry``/
    ``accept_renamed`` it is returned in :attr:`RepairResult.unresolved`. Everything is checked
    before anything is written.
    """
    to_apply = _unique(mark_applied)
    to_retry = _unique(retry)
    both = sorted(set(to_apply) & set(to_retry))
    if both:
        raise ConfigurationError(
            f"version(s) {', '.join(map(str, both))} given to both --applied and --retry; choose one"
        )
    conn, history = session.conn, session.history
    status = compute(migrations, history.rows(conn))
    by_version = {e.version: e for e in status.entries}
    to_rename = [_recorded(by_version, v, history.display, State.RENAMED,
                           "there is no recorded name to change", "renamed: --accept-renamed only records the "
                           "new name of an applied migration whose file now has another name")
                 for v in _unique(accept_renamed)]
    for v in (*to_apply, *to_retry):
        _recorded(by_version, v, history.display, State.FAILED, "there is nothing to resolve",
                  "failed part way: --applied and --retry only resolve a no-transaction migration that "
                  "stopped before it finished")

    if versions is None:
        checksum_targets = [] if (to_apply or to_retry or to_rename) else status.having(State.MODIFIED)
    else:
        checksum_targets = []
        for v in _unique(versions):
            e = by_version.get(v)
            if e is None or e.row is None:
                raise HistoryError(f"version {v} is not applied: there is no checksum to repair")
            if e.state is State.FAILED:
                raise HistoryError(f"{e.label} stopped part way ({describe_failure(e)}); "
                                   + resolution_commands(v))
            if e.state is State.MISSING:
                raise HistoryError(
                    f"{e.label} is applied but its file is gone, so there is no checksum to accept: "
                    "restore the file (from version control) rather than repairing it"
                )
            if e.state is State.RENAMED:
                raise HistoryError(f"version {v} was {e.note}: repair does not adopt a file of another "
                                   f"name unless told to. {renamed_remedy(e)}")
            if e.state is State.APPLIED:
                log.info("%s: checksum already matches the file; nothing to repair", e.label)
                continue
            checksum_targets.append(e)

    changes: list[Repaired] = []
    statements: list[sql.Composed] = []
    for e in checksum_targets:
        assert e.migration is not None and e.row is not None
        old, new = e.row.checksum, e.migration.checksum
        detail = f"accepted the edited file: checksum {old} -> {new}"
        statements.append(
            sql.SQL("UPDATE {history} SET checksum = {new} WHERE version = {version} AND checksum = {old};")
            .format(history=history.ident, new=sql.Literal(new), version=sql.Literal(e.version),
                    old=sql.Literal(old))
            + _log(history, e, detail, new))
        changes.append(Repaired(e.version, e.label, "checksum", old, new, detail))
    for v in to_apply:
        e = by_version[v]
        assert e.row is not None
        old = e.row.checksum
        # A file of another name at that version is not the one that ran: its checksum is not adopted.
        new = e.migration.checksum if e.migration and e.migration.name == e.row.name else old
        detail = f"marked applied by hand after it stopped part way ({describe_failure(e)})"
        if new != old:
            detail += f"; checksum {old} -> {new}"
        statements.append(
            sql.SQL("UPDATE {history} SET state = 'applied', checksum = {new}, statements_done = NULL,"
                    " error = NULL, applied_at = now(), applied_by = current_user"
                    " WHERE version = {version} AND state <> 'applied';")
            .format(history=history.ident, new=sql.Literal(new), version=sql.Literal(v))
            + _log(history, e, detail, new))
        changes.append(Repaired(v, e.label, "applied", old, new, detail))
    for v in to_retry:
        e = by_version[v]
        assert e.row is not None
        detail = f"cleared after it stopped part way ({describe_failure(e)}); `up` runs it again " \
                 "from its first statement"
        statements.append(
            sql.SQL("DELETE FROM {history} WHERE version = {version} AND state <> 'applied';")
            .format(history=history.ident, version=sql.Literal(v))
            + _log(history, e, detail, e.row.checksum))
        changes.append(Repaired(v, e.label, "retry", e.row.checksum, None, detail))
    for e in to_rename:
        statement, change = _adopt_renamed(history, e)
        statements.append(statement)
        changes.append(change)

    _write(session, statements)
    for c in changes:
        log.info("repaired %s: %s", c.label, c.detail)
    handled = set(to_apply) | set(to_retry) | {e.version for e in to_rename}
    unresolved = tuple(_unresolved(e) for e in status.having(State.FAILED, State.RENAMED)
                       if e.version not in handled)
    return RepairResult(tuple(changes), unresolved)


def _recorded(by_version: dict[int, MigrationStatus], v: int, display: str, state: State, absent: str,
              not_state: str) -> MigrationStatus:
    """Version ``v``'s entry, refused unless it is in the history in ``state``."""
    e = by_version.get(v)
    if e is None or e.row is None:
        raise HistoryError(f"version {v} is not in {display}: {absent}")
    if e.state is not state:
        raise HistoryError(f"{e.label} is {e.state.value}, not {not_state}")
    return e


def _adopt_renamed(history: History, e: MigrationStatus) -> tuple[sql.Composed, Repaired]:
    """The history takes the name (and checksum) of the file now at ``e``'s version."""
    assert e.migration is not None and e.row is not None
    old, new = e.row.checksum, e.migration.checksum
    detail = f"adopted {e.label} as the file of version {e.version}, applied as {e.applied_label}"
    detail += f"; checksum {old} -> {new}" if new != old else " (same text)"
    statement = (
        sql.SQL("UPDATE {history} SET name = {name}, checksum = {new} WHERE version = {version}"
                " AND name = {old_name} AND checksum = {old};")
        .format(history=history.ident, name=sql.Literal(e.migration.name), new=sql.Literal(new),
                version=sql.Literal(e.version), old_name=sql.Literal(e.row.name), old=sql.Literal(old))
        + _log(history, e, detail, new))
    return statement, Repaired(e.version, e.label, "renamed", old, new, detail)


def _unresolved(e: MigrationStatus) -> Unresolved:
    if e.state is State.RENAMED:
        return Unresolved(e.version, e.label, e.note or "", renamed_remedy(e), reason="renamed")
    return Unresolved(e.version, e.label, describe_failure(e), resolution_commands(e.version))


def _log(history: History, e: MigrationStatus, detail: str, checksum: str | None) -> sql.Composed:
    return history.log_row(version=e.version, name=e.name, direction="repair", outcome="ok",
                           checksum=checksum, detail=detail, execution_ms=0)


def _write(session: Session, statements: Sequence[sql.Composed]) -> None:
    """All of it or nothing: one guarded transaction."""
    if statements:
        session.transaction("".join(st.as_string(session.conn) for st in statements), "writing the history")


def _unique(values: Iterable[int]) -> list[int]:
    return list(dict.fromkeys(int(v) for v in values))
