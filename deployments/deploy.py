"""Register marketpipe with a Prefect server: the ``marketpipe`` process work pool and its queues,
then every deployment of ``prefect.yaml`` (``prefect --no-prompt deploy --all``).

Both steps are idempotent: an existing pool or queue is left as it is, and ``prefect deploy``
updates deployments in place. :func:`deploy_changed` skips ``prefect deploy`` (tens of seconds)
when the server already holds every deployment of this very ``prefect.yaml`` and entrypoint code:
the digest of those files is kept on the server, in the Prefect variable ``marketpipe_deployed_spec``,
so a fresh or reset server is always deployed to. The Prefect API is whatever PREFECT_API_URL says (the ``marketpipe``
CLI sets it from the settings before calling in here).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from loguru import logger

from core.errors import ServiceError

POOL = "marketpipe"
QUEUES = ("batch", "streaming", "maintenance")
DEPLOY_TIMEOUT_SECONDS = 300.0
SPEC_VARIABLE = "marketpipe_deployed_spec"
STDERR_TAIL_LINES = 20


def _api_url() -> str:
    return os.environ.get("PREFECT_API_URL") or "(PREFECT_API_URL is not set)"


def ensure_work_pool(name: str = POOL, queues: Sequence[str] = QUEUES) -> list[str]:
    """Create the process work pool ``name`` and its ``queues`` when missing; returns what was
    created (``pool:NAME``, ``queue:NAME``), empty when everything already existed."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
    from prefect.workers.process import ProcessWorker

    created: list[str] = []
    try:
        with get_client(sync_client=True) as client:
            try:
                pool = client.read_work_pool(name)
            except ObjectNotFound:
                pool = None
            if pool is None:
                try:
                    client.create_work_pool(
                        WorkPoolCreate(
                            name=name, type="process", base_job_template=ProcessWorker.get_default_base_job_template()
                        )
                    )
                    created.append(f"pool:{name}")
                except ObjectAlreadyExists:  # another host created it meanwhile
                    pass
            elif pool.type != "process":
                raise ServiceError(
                    f"work pool {name!r} at {_api_url()} has type {pool.type!r}, not 'process'; "
                    "delete it (prefect work-pool delete) or choose another pool name"
                )
            existing = {q.name for q in client.read_work_queues(work_pool_name=name)}
            for queue in queues:
                if queue in existing:
                    continue
                try:
                    client.create_work_queue(name=queue, work_pool_name=name)
                    created.append(f"queue:{queue}")
                except ObjectAlreadyExists:
                    pass
    except ServiceError:
        raise
    except Exception as exc:  # httpx / Prefect errors: the server is down, refuses, or the URL is wrong
        raise ServiceError(
            f"cannot create the work pool {name!r} at {_api_url()}: {type(exc).__name__}: {exc}"
        ) from exc
    if created:
        logger.info("created {} at {}", ", ".join(created), _api_url())
    return created


def _tail(text: str, lines: int = STDERR_TAIL_LINES) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def deploy_all(project_dir: Path | str, timeout: float = DEPLOY_TIMEOUT_SECONDS) -> list[str]:
    """Run ``prefect --no-prompt deploy --all`` in ``project_dir`` and return the names
    (``flow/deployment``) of the deployments its ``prefect.yaml`` declares, read back from the
    server. Raises ServiceError with the command's output tail when Prefect refuses."""
    import yaml

    project = Path(project_dir).resolve()
    spec = project / "prefect.yaml"
    if not spec.is_file():
        raise ServiceError(f"no prefect.yaml in {project}: run marketpipe deploy from the repository root")
    declared = [d["name"] for d in (yaml.safe_load(spec.read_text()) or {}).get("deployments") or []]
    prefect = Path(sys.executable).parent / "prefect"
    argv = [str(prefect) if prefect.exists() else "prefect", "--no-prompt", "deploy", "--all"]
    env = {**os.environ, "MARKETPIPE_HOME": str(project)}
    try:
        done = subprocess.run(argv, cwd=project, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise ServiceError(f"prefect deploy --all did not finish within {timeout:.0f} s against {_api_url()}") from exc
    except OSError as exc:
        raise ServiceError(f"cannot run {argv[0]}: {exc}") from exc
    if done.returncode != 0:
        output = _tail(done.stderr) or _tail(done.stdout)
        raise ServiceError(f"prefect deploy --all failed (exit {done.returncode}) against {_api_url()}:\n{output}")
    return _read_back(declared)


def _declared(project: Path) -> list[dict]:
    import yaml

    return list((yaml.safe_load((project / "prefect.yaml").read_text()) or {}).get("deployments") or [])


def spec_digest(project_dir: Path | str) -> str:
    """sha256 over prefect.yaml and every entrypoint file it names (a flow's signature is the
    deployment's parameter schema, so changed flow code may change the deployment)."""
    project = Path(project_dir).resolve()
    files = {"prefect.yaml", *(d["entrypoint"].split(":", 1)[0] for d in _declared(project) if d.get("entrypoint"))}
    digest = hashlib.sha256()
    for name in sorted(files):
        path = project / name
        digest.update(name.encode() + b"\0" + (path.read_bytes() if path.is_file() else b"(missing)") + b"\0")
    return digest.hexdigest()


def deploy_changed(
    project_dir: Path | str, timeout: float = DEPLOY_TIMEOUT_SECONDS, *, force: bool = False
) -> tuple[list[str], bool]:
    """:func:`deploy_all` unless the server already has this project's deployments as they are
    now; returns the deployment names and whether ``prefect deploy`` ran."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import VariableCreate, VariableUpdate

    project = Path(project_dir).resolve()
    if not (project / "prefect.yaml").is_file():
        raise ServiceError(f"no prefect.yaml in {project}: run marketpipe deploy from the repository root")
    digest = spec_digest(project)
    declared = [d["name"] for d in _declared(project)]
    try:
        with get_client(sync_client=True) as client:
            known = client.read_variable_by_name(SPEC_VARIABLE)
    except Exception as exc:
        raise ServiceError(f"cannot read {SPEC_VARIABLE} at {_api_url()}: {type(exc).__name__}: {exc}") from exc
    if not force and known is not None and known.value == digest:
        try:
            return _read_back(declared), False
        except ServiceError:
            pass  # a deployment was deleted meanwhile: deploy again
    names = deploy_all(project, timeout)
    try:
        with get_client(sync_client=True) as client:
            if known is None:
                client.create_variable(VariableCreate(name=SPEC_VARIABLE, value=digest, tags=["marketpipe"]))
            else:
                client.update_variable(VariableUpdate(name=SPEC_VARIABLE, value=digest))
    except Exception as exc:
        raise ServiceError(f"deployed, but cannot record {SPEC_VARIABLE} at {_api_url()}: {exc}") from exc
    return names, True


def _read_back(declared: list[str]) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName, FlowFilter, FlowFilterId

    try:
        with get_client(sync_client=True) as client:
            by_name = DeploymentFilter(name=DeploymentFilterName(any_=declared))
            found = client.read_deployments(deployment_filter=by_name)
            by_id = FlowFilter(id=FlowFilterId(any_=list({d.flow_id for d in found})))
            flows = {f.id: f.name for f in client.read_flows(flow_filter=by_id)}
    except Exception as exc:
        raise ServiceError(f"cannot read the deployments back from {_api_url()}: {type(exc).__name__}: {exc}") from exc
    names = sorted(f"{flows.get(d.flow_id, d.flow_id)}/{d.name}" for d in found)
    missing = set(declared) - {d.name for d in found}
    if missing:
        raise ServiceError(
            f"prefect deploy --all reported success but {', '.join(sorted(missing))} is missing at {_api_url()}"
        )
    return names
