"""SafeMLFlowLogger: MLflow tracking that can fail without stopping training.

A long run must not die at its last step because the tracking store is unreachable, read-only or
its SQLite file is locked by another process. The first failing MLflow call (creating the run,
logging metrics, params or an artifact, closing the run) is reported once as a warning; from then
on the logger does nothing and training goes on: checkpoints, the console output and the closing
summary do not depend on MLflow. A run that cannot even be created stores its checkpoints under
``runs/offline/<time>-<pid>/checkpoints``.

Resuming into an existing run (``run_id``) is tolerant too: a run id unknown to the store starts a
new run (with a warning), and parameters the run already has are not logged again (MLflow refuses
to change a parameter; a changed value is reported, the first one is kept).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from typing import Any, Literal

from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.loggers.logger import Logger, rank_zero_experiment
from lightning.pytorch.utilities import rank_zero_only, rank_zero_warn


@contextlib.contextmanager
def _quiet_store_errors():
    """MLflow's SQL store logs every database error with a full traceback before raising it; the
    caller here reports the failure once, in one line, so that log is held back meanwhile."""
    store_logger = logging.getLogger("mlflow.store.db.utils")
    # `disabled`, not setLevel: setLevel clears the level cache of every logger, and this runs each
    # time the progress bar reads the run (every step; benchmarks/framework_overhead.py profiled it).
    was = store_logger.disabled
    store_logger.disabled = True
    try:
        yield
    finally:
        store_logger.disabled = was


class _NullClient:
    """Stands in for the MLflow client once tracking has failed: every method does nothing."""

    def __getattr__(self, name: str):
        return lambda *args, **kwargs: None


class _GuardedClient:
    """The MLflow client with every method call guarded: an exception disables tracking, returns None."""

    def __init__(self, client, logger: SafeMLFlowLogger) -> None:
        self._client, self._logger = client, logger

    def __getattr__(self, name: str):
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            if self._logger.failure is not None:
                return None
            try:
                with _quiet_store_errors():
                    return attr(*args, **kwargs)
            except Exception as err:  # noqa: BLE001 - any tracking failure must not stop training
                self._logger._fail(err, f"MlflowClient.{name}")
                return None

        return call


def _error_code(err: BaseException) -> str | None:
    return getattr(err, "error_code", None)


class SafeMLFlowLogger(MLFlowLogger):
    """``MLFlowLogger`` (same arguments) whose failures never stop training; see the module docstring.

    ``failure`` holds the first error (None while tracking works).
    """

    _failure: str | None = None
    _offline_version: str | None = None
    _lost_race = False

    def __init__(
        self,
        experiment_name: str = "lightning_logs",
        run_name: str | None = None,
        tracking_uri: str | None = None,
        tags: dict[str, Any] | None = None,
        save_dir: str | None = "./mlruns",
        log_model: Literal[True, False, "all"] = False,
        prefix: str = "",
        artifact_location: str | None = None,
        run_id: str | None = None,
        synchronous: bool | None = None,
    ) -> None:
        tracking_uri = tracking_uri or os.getenv("MLFLOW_TRACKING_URI")
        try:
            with _quiet_store_errors():  # MLflow opens (and for SQLite creates / migrates) the store right here
                super().__init__(
                    experiment_name=experiment_name,
                    run_name=run_name,
                    tracking_uri=tracking_uri,
                    tags=tags,
                    save_dir=save_dir,
                    log_model=log_model,
                    prefix=prefix,
                    artifact_location=artifact_location,
                    run_id=run_id,
                    synchronous=synchronous,
                )
        except Exception as err:  # noqa: BLE001 - keep MLFlowLogger's attributes, track nothing
            Logger.__init__(self)
            self._experiment_name, self._experiment_id, self._run_name, self._run_id = (
                experiment_name,
                None,
                run_name,
                run_id,
            )
            self._tracking_uri = tracking_uri or f"file:{save_dir}"
            self.tags, self._log_model, self._prefix, self._artifact_location = (
                tags,
                log_model,
                prefix,
                artifact_location,
            )
            self._logged_model_time, self._checkpoint_callback, self._log_batch_kwargs = {}, None, {}
            self._initialized, self._mlflow_client = False, None
            self._fail(err, "opening the tracking store")

    @property
    def failure(self) -> str | None:
        return self._failure

    def _fail(self, err: BaseException, where: str) -> None:
        if self._failure is not None:
            return
        self._failure = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"[:300]
        rank_zero_warn(
            f"MLflow tracking at {self._tracking_uri} failed in {where} ({self._failure}). Training goes on "
            "without MLflow from here (checkpoints and the printed summary are not affected); this is "
            "reported once.",
            category=RuntimeWarning,
        )

    @property
    @rank_zero_experiment
    def experiment(self):
        if self._failure is not None:
            return _NullClient()
        try:
            with _quiet_store_errors():
                client = MLFlowLogger.experiment.fget(self)
        except Exception as err:  # noqa: BLE001
            if self._run_id is not None and _error_code(err) == "RESOURCE_DOES_NOT_EXIST":
                rank_zero_warn(
                    f"MLflow run {self._run_id} is not in {self._tracking_uri}: logging to a new run instead"
                )
                self._run_id = None
                return self.experiment
            if _error_code(err) == "RESOURCE_ALREADY_EXISTS" and not self._lost_race:
                # Another process (a suite's other job) created the experiment between MLFlowLogger's lookup
                # and its create_experiment: look it up again, once.
                self._lost_race = True
                return self.experiment
            self._fail(err, "creating the run")
            return _NullClient()
        return _GuardedClient(client, self)

    @property
    def name(self) -> str | None:
        name = super().name
        return "offline" if name is None and self._failure is not None else name

    @property
    def version(self) -> str | None:
        version = super().version
        if version is None and self._failure is not None:
            if self._offline_version is None:
                self._offline_version = time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"
            return self._offline_version
        return version

    @rank_zero_only
    def log_hyperparams(self, params: Any) -> None:
        from lightning.fabric.utilities.logger import _convert_params, _flatten_dict

        if self._failure is not None:
            return
        params = _flatten_dict(_convert_params(params))
        run = self.experiment.get_run(self.run_id) if self.run_id else None
        existing = dict(run.data.params) if run is not None else {}
        if existing:  # a resumed run: MLflow parameters cannot change
            changed = sorted(k for k, v in params.items() if k in existing and existing[k] != str(v)[:250])
            if changed:
                rank_zero_warn(
                    f"MLflow run {self.run_id} already records other values for {changed[:8]}"
                    f"{' ...' if len(changed) > 8 else ''}; MLflow keeps the first values"
                )
            params = {k: v for k, v in params.items() if k not in existing}
        if params and self._failure is None:
            self._guard(super().log_hyperparams, "log_hyperparams", params)

    @rank_zero_only
    def log_metrics(self, metrics, step: int | None = None) -> None:
        if self._failure is None:
            self._guard(super().log_metrics, "log_metrics", metrics, step)

    @rank_zero_only
    def finalize(self, status: str = "success") -> None:
        if self._failure is None:
            self._guard(super().finalize, "finalize", status)

    def after_save_checkpoint(self, checkpoint_callback) -> None:
        if self._failure is None:
            self._guard(super().after_save_checkpoint, "after_save_checkpoint", checkpoint_callback)

    def mark_running(self) -> None:
        """Set a resumed run's status back to RUNNING (an interrupted run was closed as FAILED or left RUNNING)."""
        if self._failure is None and self.run_id:
            self.experiment.update_run(self.run_id, status="RUNNING")

    def _guard(self, fn, where: str, *args) -> None:
        try:
            with _quiet_store_errors():
                fn(*args)
        except Exception as err:  # noqa: BLE001
            self._fail(err, where)
