"""Optuna studies shared by several ``tune`` workers: heartbeats, stale trials, retries.

Optuna's own answer to a worker that dies is the heartbeat of an RDB storage: a
trial's worker records it every ``heartbeat`` seconds while the trial runs; a trial
whose heartbeat is older than the grace period is stale, and ``fail_stale_trials``
(called by every worker before it asks) marks it ``FAIL`` and calls the storage's
failed-trial callback, here Optuna's ``RetryFailedTrialCallback``: a ``WAITING`` copy
of the trial (same parameters, ``retry_history`` in its system attributes), which the
next ``ask`` of any worker takes first. ``study.optimize`` runs one heartbeat thread per
trial; a batch of asked trials trains as one program, so ``Heartbeat`` is one thread
beating for every trial of the batch while it trains. A trial failed as stale while its
worker lives (its heartbeat held up past the grace period: a starved machine) is retried
by another; its worker's late value is dropped (``tell(skip_if_finished=True)``).

A storage without a heartbeat (SQLite or PostgreSQL given by URL, an in-memory study)
still works for one worker at a time, as before, but a trial a killed worker leaves
``RUNNING`` stays so (nobody can tell it from another worker's), and counts for nothing.
"""

from __future__ import annotations

import contextlib
import inspect
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Any

_POLL = 0.2  # seconds between looks at the running trials (new ones beat at once)
STUDY = "`tune(study=...)`"  # what a storage fault names


def tune_storage(
    url: str, *, heartbeat: int = 10, grace: int | None = None, retries: int | None = 3
) -> Any:
    """An Optuna RDB storage for ``tune`` workers that share a study.

    Args:
      url: an SQLAlchemy URL: ``postgresql://user:password@host:5432/db`` (the
        ``psycopg2`` driver is in the ``tune`` extra), ``mysql://...``, or
        ``sqlite:///tune.db`` (one machine: SQLite locks the whole file per write).
      heartbeat: seconds between a running trial's heartbeats.
      grace: seconds without a heartbeat after which a running trial is stale: failed
        and retried by the next worker that asks (default: 3 heartbeats).
      retries: how many times one trial is retried (``None``: no limit).

    Returns:
      An ``optuna.storages.RDBStorage``: give it to ``optuna.create_study(storage=...,
      load_if_exists=True)`` in every worker.

    Raises:
      ValueError: the URL is malformed, its driver is missing, or its server does not
        answer (one line, the password hidden).
    """
    optuna = _optuna()
    for name, v in (("heartbeat", heartbeat), ("grace", grace), ("retries", retries)):
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            raise ValueError(f"`tune_storage({name}=...)` must be a positive int; got {v!r}.")
    if grace is not None and grace <= heartbeat:
        raise ValueError(
            f"`tune_storage(grace={grace})` must exceed `heartbeat={heartbeat}`: a trial "
            "would go stale between two of its heartbeats."
        )
    with warnings.catch_warnings():  # heartbeats and retries are "experimental" in Optuna
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
        retry = retry or optuna.storages.RetryFailedTrialCallback  # (Optuna < 4.9)
        params = inspect.signature(optuna.storages.RDBStorage).parameters
        name = "heartbeat_stale_trial_callback"
        name = name if name in params else "failed_trial_callback"
        kw = {name: retry(max_retry=retries)}
        kw |= {"heartbeat_interval": heartbeat, "grace_period": grace or 3 * heartbeat}
        with answering(f"`tune_storage(url={hidden(url)!r})`", "cannot open it"):
            return _created(optuna, url, kw)


def _created(optuna, url: str, kw: dict, tries: int = 5) -> Any:
    """``RDBStorage(url, **kw)``, tried again where its tables were being made.

    Where workers start together on an empty database, one creates Optuna's tables and
    the others' ``CREATE TABLE`` clash with it (PostgreSQL: an integrity or programming
    error; SQLite: an operational error, "table ... already exists"). Any other
    operational error (a server that does not answer) is raised at once.
    """
    import sqlalchemy.exc

    for i in range(tries):
        try:
            return optuna.storages.RDBStorage(url, **kw)
        except (
            sqlalchemy.exc.IntegrityError,
            sqlalchemy.exc.ProgrammingError,
            sqlalchemy.exc.OperationalError,
        ) as err:
            clash = not isinstance(err, sqlalchemy.exc.OperationalError) or (
                "already exists" in str(err)
            )
            if not clash or i == tries - 1:
                raise
            time.sleep(0.5 * (i + 1))


def hidden(url: str) -> str:
    """``url`` with its password, if any, as ``***``."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL at all: nothing to hide
        return url


@contextlib.contextmanager
def answering(what: str, doing: str) -> Iterator[None]:
    """Storage faults (a server gone, a wrong URL, a missing driver) as one-line errors."""
    optuna = _optuna()
    try:
        import sqlalchemy.exc

        faults: tuple = (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError)
    except ImportError:  # pragma: no cover - optuna needs SQLAlchemy for RDB storage
        faults = (optuna.exceptions.StorageInternalError,)
    try:
        yield
    except (*faults, ImportError) as err:
        cause = err.__cause__ if err.__cause__ is not None else err
        first = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        raise ValueError(f"{what}: {doing}: {first}") from None


def ask(study, space: Mapping[str, Any]):
    """``study.ask(space)``, its first heartbeat recorded; ``Heartbeat`` beats on.

    (Optuna warns that heartbeats are meant for ``Study.optimize``, which beats for
    its one trial; a batch's trials are asked first and beat together while they train.)
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Heartbeat of storage is supposed to be used")
        trial = study.ask(dict(space))
    if interval(study) is not None:  # at once: a trial that never beat is never stale
        study._storage.record_heartbeat(trial._trial_id)
    return trial


@contextlib.contextmanager
def working(study, running: Callable[[], list]) -> Iterator[None]:
    """A worker asking, training and telling: the trials ``running()`` beat meanwhile.

    A storage fault is an error naming ``tune(study=...)``: the trials in training are
    left ``RUNNING``, failed and retried once their heartbeat is stale.
    """
    with answering(STUDY, "its storage stopped answering"), Heartbeat(study, running):
        yield


def finished(optuna, study) -> int:
    """The study's finished trials (``COMPLETE`` or ``PRUNED``): every worker's."""
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return len(study.get_trials(deepcopy=False, states=states))


def fail_stale(optuna, study) -> None:
    """Marks ``FAIL`` the trials whose worker stopped beating, and queues their retries."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def fail(optuna, study, trials, *, retry: bool) -> None:
    """Tells ``trials`` ``FAIL``; with ``retry``, each is queued again as a stale one is."""
    for t in trials:
        study.tell(t.number, state=optuna.trial.TrialState.FAIL)
    if retry:
        queue_retries(study, trials)


def queue_retries(study, trials) -> None:
    """The failed ``trials`` queued again, by the storage's failed-trial callback.

    (Where the storage has a heartbeat: a retry of the same values, marked as such.)
    """
    storage = study._storage
    get: Callable[[], Any] = lambda: None  # noqa: E731
    for name in ("get_heartbeat_stale_trial_callback", "get_failed_trial_callback"):
        if hasattr(storage, name):  # (Optuna >= 4.9 deprecates the second)
            get = getattr(storage, name)
            break
    callback: Any = get() if interval(study) is not None else None
    for t in trials if callback is not None else ():
        callback(study, storage.get_trial(t._trial_id))


def interval(study) -> int | None:
    """The study's heartbeat interval in seconds; ``None`` where its storage has none."""
    get = getattr(study._storage, "get_heartbeat_interval", None)
    return None if get is None else get()


def check_study_space(optuna, study, space: Mapping[str, Any]) -> None:
    """Refuses a study whose trials were asked from another space than ``space``.

    (Its finished trials: another worker's trial being asked has some of its values.)
    """
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    for t in study.get_trials(deepcopy=False, states=states):
        for name in sorted(set(t.distributions) | set(space)):
            theirs, ours = t.distributions.get(name), space.get(name)
            if theirs != ours:
                raise ValueError(
                    f"`tune(space={{{name!r}: {ours!r}}})`: the study's trials were asked "
                    f"with {theirs!r} for it (trial {t.number}); give the space the study "
                    "was made with, or another study name."
                )


class Heartbeat:
    """A thread recording the heartbeat of every trial ``running()`` returns.

    Each trial beats as soon as it is seen (a trial with no heartbeat yet is never
    stale) and then every ``interval`` seconds. A storage fault stops nothing here: the
    training goes on and the next tell reports it.
    """

    def __init__(self, study, running: Callable[[], list]):
        self.study = study
        self.running = running
        self.every = interval(study)
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def __enter__(self) -> Heartbeat:
        if self.every is not None:
            self.thread = threading.Thread(target=self._beat, name="tune-heartbeat", daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.thread is not None:
            self.stop.set()
            self.thread.join()

    def _beat(self) -> None:
        assert self.every is not None
        last: dict[int, float] = {}
        while not self.stop.is_set():
            now = time.monotonic()
            for t in list(self.running()):
                if now - last.get(t._trial_id, -self.every) >= self.every:
                    try:
                        self.study._storage.record_heartbeat(t._trial_id)
                    except Exception:  # the storage is gone: the tell will say so
                        continue
                    last[t._trial_id] = now
            self.stop.wait(_POLL)


def _optuna():
    import optuna  # (only called where Optuna is known to be installed)

    return optuna
