"""Sending mail: written to the outbox with the change it reports, sent by a job over
SMTP (``MAIL_SMTP_URL``, e.g. ``smtp+starttls://user:password@mail.example:587``). Without
SMTP, in development, the messages stay in the outbox and the built-in viewer at
``/dev/mail`` shows them."""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from urllib.parse import unquote, urlsplit

from flask import current_app
from sqlalchemy import select

from saas import clock, db, jobs
from saas.mail.models import OutgoingMail


def send(recipient: str, subject: str, body: str) -> OutgoingMail:
    """Queue a plain-text message; it goes out when the current unit of work commits."""
    mail = OutgoingMail(recipient=recipient, subject=subject, body=body, created_at=clock.now(), attempts=0)
    db.session.add(mail)
    db.session.flush()
    if current_app.config.get("MAIL_SMTP_URL"):
        jobs.enqueue("default", deliver, mail.id)
    return mail


def deliver(mail_id: int) -> bool:
    """Send one queued message over SMTP (a job); True when it went out."""
    mail = db.session.get(OutgoingMail, mail_id)
    if mail is None or mail.sent_at is not None:
        return False
    config = current_app.config
    mail.attempts += 1
    message = EmailMessage()
    message["From"] = config["MAIL_FROM"]
    message["To"] = mail.recipient
    message["Subject"] = mail.subject
    message.set_content(mail.body)
    url = urlsplit(config["MAIL_SMTP_URL"])
    try:
        connect = smtplib.SMTP_SSL if url.scheme == "smtps" else smtplib.SMTP
        with connect(url.hostname or "localhost", url.port or (465 if url.scheme == "smtps" else 587),
                     timeout=30) as smtp:
            if url.scheme == "smtp+starttls":
                smtp.starttls(context=ssl.create_default_context())
            if url.username:
                smtp.login(unquote(url.username), unquote(url.password or ""))
            smtp.send_message(message)
    except (OSError, smtplib.SMTPException) as error:
        mail.last_error = f"{type(error).__name__}: {error}"[:300]
        db.session.commit()  # keep the attempt; the job fails and the operator sees why
        raise
    mail.sent_at, mail.last_error = clock.now(), None
    return True


def recent(limit: int = 50) -> list[OutgoingMail]:
    return list(db.session.scalars(select(OutgoingMail).order_by(OutgoingMail.id.desc()).limit(limit)))
