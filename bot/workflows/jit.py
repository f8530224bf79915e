"""Just-in-time credentials around a deployment run: issue before the first step, revoke at the end.

For every system of the run whose environment configures ``credentials: {provider: ...}``:

1. a private run directory (0700) is made for the provider's files;
2. the provider issues a credential scoped to the environment's targets (every ring's hosts) and valid
   until the booked window ends; a run without a window (an emergency ``--now``, a late rollback) gets
   ``max_duration`` or :data:`NO_WINDOW_TTL` from now;
3. the control log records which credential the run got (``credential_issued``: provider, key id, serial,
   valid_before; never the secret) and the deployment row keeps the same record (``changes show --json``);
4. the executor gets the credential only as ``DeploymentRequest.credential_env`` (file paths, lease ids);
5. :func:`release` revokes every credential and deletes the run directory, also after a failure or an
   exception, and logs ``credential_revoked`` with whether the provider confirmed it (a failed revoke still
   expires at ``valid_before``).

If issuing fails for one system, what was already issued is released and ``CredentialError`` propagates:
the caller refuses the run before anything changed.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.config import Config
from bot.credentials.base import Credential, CredentialProvider, CredentialRequest, ProviderOptions
from bot.credentials.registry import Providers
from bot.deps import Clock
from bot.errors import CredentialError
from bot.workflows import deployment as flow
from bot.workflows import lifecycle
from storage import deployments

log = logging.getLogger(__name__)

NO_WINDOW_TTL = timedelta(hours=1)


@dataclass
class _Lease:
    target: flow.Target
    provider: CredentialProvider[ProviderOptions]
    credential: Credential
    run_dir: Path


@dataclass
class Held:
    """The credentials of one run: each deployment's environment for its executor."""

    leases: list[_Lease] = field(default_factory=list)

    @property
    def env(self) -> dict[int, dict[str, str]]:
        """``credential_env`` by deployment id."""
        return {lease.target.deployment_id: dict(lease.credential.env) for lease in self.leases}


def _hosts(config: Config, system: str, stage: str) -> tuple[str, ...]:
    env = config.systems[system].environments[stage]
    ringed = tuple(h for ring in env.rings or [] for h in ring.targets)
    return ringed or env.targets


def valid_before(config: Config, *, system: str, stage: str, now: datetime, window_end: datetime | None) -> datetime:
    """Step 2: the window's end, else ``max_duration`` (or :data:`NO_WINDOW_TTL`) from now."""
    if window_end is not None and window_end > now:
        return window_end
    return now + (config.systems[system].environments[stage].max_duration or NO_WINDOW_TTL)


async def issue(
    sessions: async_sessionmaker[AsyncSession],
    *,
    config: Config,
    providers: Providers | None,
    clock: Clock,
    run: flow.Run,
    window_end: datetime | None,
    actor: str,
) -> Held:
    """Steps 1-3 for every system of the run (see the module docstring)."""
    held = Held()
    if providers is None:
        return held
    try:
        for target in run.targets:
            provider = providers.get(target.system, run.stage)
            if provider is None:
                continue
            run_dir = Path(tempfile.mkdtemp(prefix=f"patchwarden-run-{target.run_id}-"))  # 1. (0700)
            now = clock.now()
            until = valid_before(config, system=target.system, stage=run.stage, now=now, window_end=window_end)
            request = CredentialRequest(
                change_key=run.change.key, run_id=target.run_id, system=target.system, stage=run.stage,
                targets=_hosts(config, target.system, run.stage), now=now, run_dir=run_dir,
                valid_before=until,
            )  # fmt: skip
            try:
                credential = await provider.issue(request)  # 2.
            except BaseException:
                shutil.rmtree(run_dir, ignore_errors=True)
                raise
            held.leases.append(_Lease(target, provider, credential, run_dir))
            async with sessions.begin() as session:  # 3.
                await deployments.set_fields(session, target.deployment_id, credential=credential.record())
                await lifecycle.log(
                    session, config=config, now=clock.now(), actor=actor, action="credential_issued",
                    change=run.change, stage=run.stage, run_id=target.run_id, system=target.system,
                    **credential.record(),
                )  # fmt: skip
    except BaseException:
        await release(sessions, config=config, clock=clock, run=run, held=held, actor=actor)
        raise
    return held


async def release(
    sessions: async_sessionmaker[AsyncSession], *, config: Config, clock: Clock, run: flow.Run, held: Held, actor: str
) -> None:
    """Step 5: revoke every credential, delete its run directory, log it; never raises for a failed revoke."""
    while held.leases:
        lease = held.leases.pop()
        error = ""
        try:
            await lease.provider.revoke(lease.credential)
        except CredentialError as exc:
            error = exc.user_message
            log.warning("could not revoke %s: %s", lease.credential.key_id, exc)
        shutil.rmtree(lease.run_dir, ignore_errors=True)
        try:
            async with sessions.begin() as session:
                await lifecycle.log(
                    session, config=config, now=clock.now(), actor=actor, action="credential_revoked",
                    change=run.change, stage=run.stage, run_id=lease.target.run_id, system=lease.target.system,
                    key_id=lease.credential.key_id, serial=lease.credential.serial, revoked=not error, error=error,
                )  # fmt: skip
        except Exception:
            log.exception("could not log the revocation of %s", lease.credential.key_id)
