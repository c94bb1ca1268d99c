"""Capture helpers around a model call: the ``inference`` context manager and ``watch``.

Both time the model call with ``perf_counter`` and hand the result to ``Probe.record``, which
never raises. The model's own exception is recorded and then propagates untouched (same
object, same traceback): ``__exit__`` returns False and the decorator uses a bare ``raise``.
Extractors are user code; their failures are counted and logged by type, and the model's result
is still returned.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from time import perf_counter
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from phase4.probes.probe import Probe

F = TypeVar("F", bound=Callable[..., Any])
Extractor = Callable[..., Any]


class Inference:
    """``with probe.inference(...) as inf:`` - set ``inf.outputs`` (and optionally features,
    ``inf.model_version`` and other versions' ``inf.shadow_outputs``, docs/REVALIDATION.md).

    After the block, ``inf.latency_s`` and ``inf.record_id`` tell what was captured
    (``record_id`` stays None if the probe could not capture).
    """

    __slots__ = (
        "_probe",
        "_started",
        "acquired_at",
        "features",
        "latency_s",
        "model_version",
        "outputs",
        "record_id",
        "shadow_outputs",
        "study_uid",
    )

    def __init__(
        self,
        probe: Probe,
        study_uid: str | None,
        features: dict[str, Any] | None,
        acquired_at: Any,
        outputs: dict[str, Any] | None,
        record_id: str | None,
    ) -> None:
        self._probe = probe
        self.study_uid = study_uid
        self.features = features
        self.acquired_at = acquired_at
        self.outputs = outputs
        self.record_id = record_id
        self.latency_s: float | None = None
        self.model_version: str | None = None
        self.shadow_outputs: dict[str, dict[str, Any]] | None = None
        self._started = 0.0

    def __enter__(self) -> Inference:
        self._started = perf_counter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        self.latency_s = perf_counter() - self._started
        self.record_id = self._probe.record(
            features=self.features,
            outputs=self.outputs,
            study_uid=self.study_uid,
            acquired_at=self.acquired_at,
            latency_s=self.latency_s,
            error=exc,
            record_id=self.record_id,
            model_version=self.model_version,
            shadow_outputs=self.shadow_outputs,
        )
        return False  # never swallow the model's exception


class Watcher:
    """Builds the ``probe.watch`` wrapper for sync and async callables."""

    def __init__(
        self,
        probe: Probe,
        features: Extractor | None,
        outputs: Extractor | None,
        study_uid: Extractor | None,
        acquired_at: Extractor | None,
    ) -> None:
        self._probe = probe
        self._features = features
        self._outputs = outputs
        self._study_uid = study_uid
        self._acquired_at = acquired_at

    def wrap(self, fn: F) -> F:
        if inspect.iscoroutinefunction(fn):
            return self._wrap_async(fn)
        return self._wrap_sync(fn)

    def _wrap_sync(self, fn: F) -> F:
        @functools.wraps(fn)
        def watched(*args: Any, **kwargs: Any) -> Any:
            inputs = self._inputs(args, kwargs)
            started = perf_counter()
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                self._capture(inputs, None, perf_counter() - started, exc)
                raise
            latency_s = perf_counter() - started
            self._capture(
                inputs, self._extract("outputs", self._outputs, (result,), {}), latency_s, None
            )
            return result

        return watched  # type: ignore[return-value]

    def _wrap_async(self, fn: F) -> F:
        @functools.wraps(fn)
        async def watched(*args: Any, **kwargs: Any) -> Any:
            inputs = self._inputs(args, kwargs)
            started = perf_counter()
            try:
                result = await fn(*args, **kwargs)
            except BaseException as exc:
                self._capture(inputs, None, perf_counter() - started, exc)
                raise
            latency_s = perf_counter() - started
            self._capture(
                inputs, self._extract("outputs", self._outputs, (result,), {}), latency_s, None
            )
            return result

        return watched  # type: ignore[return-value]

    def _inputs(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any, Any]:
        """Run input extractors before the call, since the model may mutate its inputs."""
        return (
            self._extract("features", self._features, args, kwargs),
            self._extract("study_uid", self._study_uid, args, kwargs),
            self._extract("acquired_at", self._acquired_at, args, kwargs),
        )

    def _extract(
        self, name: str, extractor: Extractor | None, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        if extractor is None:
            return None
        try:
            return extractor(*args, **kwargs)
        except Exception as exc:
            self._probe._internal_error(f"{name} extractor", exc)
            return None

    def _capture(
        self,
        inputs: tuple[Any, Any, Any],
        outputs: Any,
        latency_s: float,
        error: BaseException | None,
    ) -> None:
        features, study_uid, acquired_at = inputs
        self._probe.record(
            features=features,
            outputs=outputs,
            study_uid=study_uid,
            acquired_at=acquired_at,
            latency_s=latency_s,
            error=error,
        )
