"""``kakehashi sandbox …``: the sandbox J-LIS from the command line."""

from __future__ import annotations

from pathlib import Path

import click
from flask.cli import AppGroup

from saas.cli import run_service
from saas.jpki.certificates import CertificateKind, Era, Gender
from saas.jpki.revocation import Reason
from saas.sandbox import services

group = AppGroup("sandbox", help="The sandbox J-LIS: test cards, revocations, CRLs.")


_ERAS = {era.name.lower(): era for era in Era}


@group.command("issue-card")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Card file to write (keys, certificates, PINs of a test card).")
@click.option("--era", type=click.Choice(list(_ERAS)), default=None, help="Era of birth.")
@click.option("--gender", type=click.Choice([g.value for g in Gender]), default=None)
@click.option("--seed", type=int, default=None, help="Reproducible holder.")
@click.option("--pin", default=None, help="4-digit auth PIN (random if not given).")
@click.option("--password", default=None, help="Signature password, 6–16 of A–Z 0–9.")
def issue_card_command(out: Path, era: str | None, gender: str | None, seed: int | None,
                       pin: str | None, password: str | None) -> None:
    """Issue a sandbox card to a new synthetic holder and write its card file."""
    if pin is not None and (len(pin) != 4 or not pin.isdigit()):
        raise click.BadParameter("the auth PIN is 4 digits", param_hint="--pin")
    if password is not None and not (6 <= len(password) <= 16 and password.isalnum()
                                     and password.isascii() and password.upper() == password):
        raise click.BadParameter("6–16 characters of A–Z and 0–9", param_hint="--password")
    card = run_service(lambda: services.issue_card(
        seed=seed, era=_ERAS[era] if era else None, gender=Gender(gender) if gender else None,
        auth_pin=pin, signature_password=password))
    card.write(out)
    holder = card.person.attributes
    click.echo(f"card for {holder.name} (born {holder.birthdate}) written to {out}")
    click.echo(f"auth certificate serial {card.auth.certificate.serial_number}")
    if card.signature is not None:
        click.echo(f"signature certificate serial {card.signature.certificate.serial_number}")
    else:
        click.echo("no signature certificate: the holder is under 15")


@group.command("revoke")
@click.option("--serial", type=int, required=True, help="Serial of the certificate.")
@click.option("--reason", type=click.Choice([r.value for r in Reason]), default="unspecified",
              show_default=True)
def revoke_command(serial: int, reason: str) -> None:
    """Revoke one sandbox certificate."""
    run_service(lambda: services.revoke(serial, Reason(reason)))
    click.echo(f"revoked {serial} ({reason})")


@group.command("renew")
@click.option("--serial", type=int, required=True, help="Serial of any current certificate of the card.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Card file to write with the renewed keys.")
def renew_command(serial: int, out: Path) -> None:
    """Renew a card: new keys and certificates, the old ones superseded and linked."""
    card = run_service(lambda: services.renew(serial))
    card.write(out)
    click.echo(f"renewed: new auth certificate {card.auth.certificate.serial_number}; card file {out}")


@group.command("publish-crl")
@click.option("--kind", type=click.Choice([k.value for k in CertificateKind]), required=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
def publish_crl_command(kind: str, out: Path) -> None:
    """Write the next full CRL (DER) of the active root generation of KIND."""
    der = run_service(lambda: services.publish_crl(CertificateKind(kind)))
    out.write_bytes(der)
    click.echo(f"{kind} CRL written to {out} ({len(der):,} bytes)")


@group.command("refresh")
def refresh_command() -> None:
    """Ingest the sandbox CRLs and linkage feed into the service's stores now."""
    from saas.sandbox.jobs import refresh_revocation_data

    result = run_service(refresh_revocation_data)
    click.echo(f"CRL entries ingested: {result['crl_entries']}; certificates linked: {result['linked']}")


@group.command("check-card")
@click.option("--card", "card_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True)
def check_card_command(card_file: Path) -> None:
    """Exit 0 when this sandbox's roots issued the card file's certificates (a card from
    a database since reset is not: make demo issues a new one)."""
    import json

    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    from saas import clock
    from saas.jpki.certificates import parse_certificate
    from saas.jpki.errors import JPKIError

    data = json.loads(card_file.read_text())
    certificate = x509.load_pem_x509_certificate(data["auth"]["certificate"].encode())

    def check() -> str | None:
        try:
            services.trust_stores().auth.validate(
                parse_certificate(certificate.public_bytes(Encoding.DER)), at=clock.now())
        except JPKIError as error:
            return error.code
        return None

    problem = run_service(check)
    if problem is not None:
        raise click.ClickException(f"{card_file}: not a card of this sandbox ({problem})")
    click.echo(f"{card_file}: issued by this sandbox")


@group.command("register-corporation")
@click.option("--card", "card_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="A card file of this sandbox: its holder becomes the representative.")
@click.option("--name", required=True, help="The corporation's name, e.g. 株式会社架け橋デモ商事")
@click.option("--address", required=True, help="The head office's address")
@click.option("--title", default="代表取締役", show_default=True)
@click.option("--hide-address", is_flag=True, help="The company keeps the representative's address out of the register")
def register_corporation_command(card_file: Path, name: str, address: str, title: str, hide_address: bool) -> None:
    """Put a corporation into the commercial-register stand-in, represented by the card's
    holder (so the card can sign powers of attorney); prints its 法人番号. Run again, it
    prints the one already registered for that holder and name."""
    import json

    from cryptography import x509
    from sqlalchemy import select

    from saas import db
    from saas.sandbox import register
    from saas.sandbox.models import SandboxCertificate, SandboxCorporation, SandboxRepresentative

    serial = x509.load_pem_x509_certificate(
        json.loads(card_file.read_text())["auth"]["certificate"].encode()).serial_number

    def put() -> str:
        certificate = db.session.scalar(select(SandboxCertificate).where(SandboxCertificate.serial == serial))
        if certificate is None:
            raise click.ClickException(f"{card_file}: not a card of this sandbox")
        holder = certificate.person
        existing = db.session.scalar(
            select(SandboxCorporation.corporate_number).join(SandboxRepresentative)
            .where(SandboxCorporation.name == name, SandboxRepresentative.name == holder.name))
        if existing is not None:
            return existing
        return register.register_corporation(name=name, address=address, representative=holder, title=title,
                                             address_hidden=hide_address).corporate_number

    click.echo(f"{name}: 法人番号 {run_service(put)}")
