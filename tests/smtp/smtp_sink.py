"""A real SMTP server for the mail tests: aiosmtpd (PyPI, installed by
scripts/aws-test-tools.sh) on a loopback port, storing each accepted message
in --dir as NNNN.eml with NNNN.json beside it (envelope, headers and parts as
Python's email parser reads them), written whole before it is renamed in.

--plan says how to answer the DATA of each message in turn; past its end
every message is accepted:
  accept          store it, 250
  defer           451, not stored
  refuse          550, not stored
  drop            close the connection without an answer, not stored
  accept-drop     store it, then close the connection without an answer
  stall           never answer (touches stall-N in --dir first), not stored
Each DATA appends its behaviour to --dir/attempts.log.
"""

import argparse
import asyncio
import json
import os
import ssl
import sys
import time
from email import policy
from email.parser import BytesParser

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Sink:
    def __init__(self, folder, plan):
        self.folder = folder
        self.plan = list(plan)
        self.stored = 0
        self.stalls = 0

    def _write(self, name, data):
        tmp = os.path.join(self.folder, "." + name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(data)
        os.rename(tmp, os.path.join(self.folder, name))

    def _store(self, envelope):
        self.stored += 1
        stem = "%04d" % self.stored
        raw = envelope.original_content or envelope.content
        message = BytesParser(policy=policy.default).parsebytes(raw)
        text = message.get_body(("plain",))
        html = message.get_body(("html",))
        summary = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "from": str(message.get("From", "")),
            "to": str(message.get("To", "")),
            "subject": str(message.get("Subject", "")),
            "message_id": str(message.get("Message-ID", "")),
            "content_type": message.get_content_type(),
            "list_unsubscribe": message.get("List-Unsubscribe"),
            "list_unsubscribe_post": message.get("List-Unsubscribe-Post"),
            "text": text.get_content() if text is not None else None,
            "html": html.get_content() if html is not None else None,
        }
        self._write(stem + ".eml", raw)
        self._write(stem + ".json", json.dumps(summary).encode())

    async def handle_DATA(self, server, session, envelope):
        behaviour = self.plan.pop(0) if self.plan else "accept"
        with open(os.path.join(self.folder, "attempts.log"), "a") as log:
            log.write(behaviour + "\n")
        if behaviour == "accept":
            self._store(envelope)
            return "250 2.0.0 OK stored"
        if behaviour == "defer":
            return "451 4.3.0 Try again later"
        if behaviour == "refuse":
            return "550 5.1.1 Mailbox unavailable"
        if behaviour in ("drop", "accept-drop"):
            if behaviour == "accept-drop":
                self._store(envelope)
            server.transport.abort()
            return "451 4.3.0 never seen by the client"
        if behaviour == "stall":
            self.stalls += 1
            open(os.path.join(self.folder, "stall-%d" % self.stalls), "w").close()
            await asyncio.sleep(3600)
            return "451 4.3.0 stalled"
        raise ValueError("unknown behaviour " + behaviour)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--plan", default="")
    parser.add_argument("--tls", choices=["none", "starttls", "implicit"], default="none")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--auth", help="user:password that AUTH must give")
    args = parser.parse_args()

    context = None
    if args.tls != "none":
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.cert, args.key)

    kwargs = {}
    if args.auth:
        user, password = args.auth.split(":", 1)

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = isinstance(auth_data, LoginPassword) and auth_data.login.decode() == user and auth_data.password.decode() == password
            # handled=False: aiosmtpd itself answers 535 to a refusal (else it answers nothing).
            return AuthResult(success=ok, handled=False)

        # aiosmtpd counts only STARTTLS as TLS; an implicit-TLS socket is encrypted from the start.
        kwargs.update(authenticator=authenticator, auth_required=True, auth_require_tls=args.tls == "starttls")
    if args.tls == "starttls":
        kwargs.update(tls_context=context, require_starttls=True)
    elif args.tls == "implicit":
        kwargs.update(ssl_context=context)

    plan = [p for p in args.plan.split(",") if p]
    controller = Controller(Sink(args.dir, plan), hostname="127.0.0.1", port=args.port, server_hostname="localhost", **kwargs)
    controller.start()
    print("listening", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        controller.stop()


if __name__ == "__main__":
    sys.exit(main())
