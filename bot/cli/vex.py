"""``patchwarden vex export|verify``: every decision as a signed OpenVEX (or CSAF VEX) document."""

from __future__ import annotations

import json
from pathlib import Path

import click

from bot.advisories import vex as vex_docs
from bot.cli import common
from bot.deps import Clock, load_signer
from bot.errors import VerificationError
from bot.workflows import vex as vex_flow


@click.group()
def vex() -> None:
    """VEX documents of the decisions (not affected, affected with the action, fixed)."""


@vex.command("export")
@click.option("--system", default=None, help="only this system's decisions")
@click.option("--format", "fmt", type=click.Choice(["openvex", "csaf"]), default="openvex", show_default=True)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="where to write it (default patchwarden.<format>.json); the signature goes to OUTPUT.sig",
)
def export(system: str | None, fmt: str, output: Path | None) -> None:
    """Write the VEX document and its detached Ed25519 signature (the control-log key)."""
    s = common.settings()
    config = common.config(s)
    signer = load_signer(s)
    target = output or Path(f"patchwarden.{fmt}.json")

    async def main() -> dict[str, object]:
        async with common.session(s) as session:
            return await vex_flow.export(session, config=config, system=system, fmt=fmt, now=Clock().now())

    data = (json.dumps(common.run(main), indent=2) + "\n").encode()
    target.write_bytes(data)
    signature = Path(f"{target}.sig")
    signature.write_text(json.dumps(vex_docs.sign(data, signer), indent=2) + "\n")
    click.echo(f"{target}: {fmt} document signed by key {signer.key_id} ({signature.name})")


@vex.command("verify")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--signature", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="the signature file (default FILE.sig)")  # fmt: skip
def verify(file: Path, signature: Path | None) -> None:
    """Check FILE's signature against the control-log key (and, for OpenVEX, the schema); exit 1 if bad."""
    s = common.settings()
    trusted = load_signer(s).public_bytes
    sig_path = signature or Path(f"{file}.sig")
    data = file.read_bytes()
    try:
        if not sig_path.is_file():
            raise VerificationError(f"no signature file {sig_path}")
        key_id = vex_docs.verify_signature(data, sig_path.read_bytes(), trusted_public_key=trusted)
        doc = json.loads(data)
        if isinstance(doc, dict) and "@context" in doc:
            vex_docs.validate_openvex(doc)
    except (VerificationError, ValueError) as exc:
        click.echo(f"FAILED: {exc}", err=True)
        raise SystemExit(1) from exc
    click.echo(f"OK: {file.name} is signed by the control-log key {key_id}")
