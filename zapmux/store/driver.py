"""The hottest writes, compiled once and run on the driver's own cursor.

``Connection.execute`` does a good deal per call on top of the driver: a cache key of
the statement, a look-up of its compiled form, parameter processing, an execution
context and a result object. For the few statements every message runs (insert a
message, mark it sent, apply a receipt, insert an outbox row, the incarnation guard)
that work was most of the writer's time. A :class:`DriverStatement` compiles its
statement once per dialect (SQLAlchemy still writes the SQL) and then hands the SQL
and its positional parameters to the DBAPI cursor of the job's connection: the same
connection, so the same transaction as the rest of the batch.

Errors come back as SQLAlchemy's (``IntegrityError`` and so on), as ``execute``
raises them, so callers catch one kind whichever way a statement ran.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, exc


class DriverStatement:
    """``stmt`` (bound parameters by name) run through the driver's cursor."""

    def __init__(self, stmt: Any) -> None:
        self.stmt = stmt
        self._forms: dict[str, _Form] = {}

    def run(self, conn: Connection, params: Mapping[str, Any]) -> Any:
        """Execute on ``conn`` (inside a write job); the DBAPI cursor, for its rows,
        ``rowcount`` or ``lastrowid``."""
        form = self._form(conn)
        return _call(conn, form.sql, form.args(params), many=False)

    def run_many(self, conn: Connection, params: Sequence[Mapping[str, Any]]) -> None:
        """Execute once per parameter set, in one ``executemany`` (inside a write job)."""
        form = self._form(conn)
        _call(conn, form.sql, [form.args(p) for p in params], many=True)

    def rows(self, conn: Connection, params: Mapping[str, Any]) -> list[Any]:
        """Execute and fetch every row (a RETURNING or a SELECT)."""
        return list(self.run(conn, params).fetchall())

    def run_record(self, conn: Connection, record: Any) -> Any:
        """:meth:`run` with each parameter the attribute of ``record`` of its name (an
        INSERT of a record: its columns), read in one step rather than through a dict
        of them and a look-up of each."""
        form = self._form(conn)
        return _call(conn, form.sql, form.of_record(record), many=False)

    def first(self, conn: Connection, params: Mapping[str, Any]) -> dict[str, Any] | None:
        """Execute a SELECT; its first row by column name (values as SQLAlchemy would
        give them: SQLite's 0/1 as booleans…), or None."""
        form = self._form(conn)
        cursor = _call(conn, form.sql, form.args(params), many=False)
        row = cursor.fetchone()
        return None if row is None else _by_name(form.results(cursor), row)

    def dicts(self, conn: Connection, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Execute a SELECT; every row as :meth:`first` gives one."""
        form = self._form(conn)
        cursor = _call(conn, form.sql, form.args(params), many=False)
        rows = cursor.fetchall()
        return [_by_name(form.results(cursor), row) for row in rows] if rows else []

    def count(self, conn: Connection, params: Mapping[str, Any]) -> int:
        """Execute; the rows it touched."""
        return int(self.run(conn, params).rowcount or 0)

    def _form(self, conn: Connection) -> _Form:
        name = conn.dialect.name
        form = self._forms.get(name)
        if form is None:
            form = self._forms[name] = _Form(self.stmt, conn)
        return form


def _by_name(
    results: list[tuple[str, Callable[[Any], Any] | None]], row: Sequence[Any]
) -> dict[str, Any]:
    return {
        name: value if process is None else process(value)
        for (name, process), value in zip(results, row, strict=True)
    }


def _call(conn: Connection, sql: str, args: Any, *, many: bool) -> Any:
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        if many:
            cursor.executemany(sql, args)
        else:
            cursor.execute(sql, args)
    except conn.dialect.loaded_dbapi.Error as error:
        raise exc.DBAPIError.instance(sql, args, error, conn.dialect.loaded_dbapi.Error) from error
    return cursor


class _Form:
    """One dialect's SQL of a statement and how to lay its parameters out."""

    def __init__(self, stmt: Any, conn: Connection) -> None:
        compiled = stmt.compile(dialect=conn.dialect)
        self.sql = str(compiled)
        if "POSTCOMPILE" in self.sql:
            raise ValueError(f"a driver statement takes no expanding parameter: {self.sql}")
        processors = compiled._bind_processors
        binds = compiled.binds
        self.names: Sequence[str] = list(compiled.positiontup or ())
        # Fixed values SQLAlchemy put in the statement itself (``values(payload=None)``).
        self.fixed = {name: binds[name].value for name in self.names if not binds[name].callable}
        self.processors: list[Callable[[Any], Any] | None] = [
            processors.get(name) for name in self.names
        ]
        # what args() does for each parameter: its name, its value when not given, and
        # how the driver wants that value (None: as it is)
        self._steps = [
            (name, self.fixed.get(name), processor)
            for name, processor in zip(self.names, self.processors, strict=True)
        ]
        self._plain = not any(self.processors)  # no value to convert (most statements)
        # of_record: the record's attributes of the parameters' names, as a tuple, and
        # where each value that needs converting stands
        self._take: Callable[[Any], Any] = (
            operator.attrgetter(*self.names) if self.names else lambda record: ()
        )
        self._convert = [(i, process) for i, process in enumerate(self.processors) if process]
        self.dialect = conn.dialect
        self.columns = compiled._result_columns
        self._results: list[tuple[str, Callable[[Any], Any] | None]] | None = None

    def results(self, cursor: Any) -> list[tuple[str, Callable[[Any], Any] | None]]:
        """Each column's name and how to turn the driver's value into SQLAlchemy's (known
        from the first cursor's description: some drivers name a value's type there)."""
        if self._results is None:
            self._results = [
                (column.keyname, column.type._cached_result_processor(self.dialect, described[1]))
                for column, described in zip(self.columns, cursor.description, strict=True)
            ]
        return self._results

    def of_record(self, record: Any) -> Sequence[Any]:
        """The parameters, each the attribute of ``record`` of its name."""
        taken = self._take(record)
        if len(self.names) == 1:
            taken = (taken,)
        if not self._convert:
            return taken  # type: ignore[no-any-return]
        args = list(taken)
        for i, process in self._convert:
            args[i] = process(args[i])
        return args

    def args(self, params: Mapping[str, Any]) -> tuple[Any, ...]:
        if self._plain:
            return tuple([params.get(name, fixed) for name, fixed, _ in self._steps])
        return tuple(
            [
                params.get(name, fixed) if process is None else process(params.get(name, fixed))
                for name, fixed, process in self._steps
            ]
        )
