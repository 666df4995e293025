"""A real SMTP server (aiosmtpd) for tests: every message it accepts is
written to DIR as NNNN.eml (the raw message) with NNNN.json beside it
(envelope sender, recipients, and the AUTH login used, if any).

    python smtp_sink.py HOST PORT DIR [USER PASSWORD]

With USER and PASSWORD, AUTH (PLAIN/LOGIN) is offered and required, and only
that login is accepted. Prints "ready" once it listens; stops on SIGTERM.
"""

import json
import os
import signal
import sys
import threading
import warnings

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Sink:
    def __init__(self, folder):
        self.folder = folder
        self.count = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.count += 1
            name = os.path.join(self.folder, "%04d" % self.count)
        auth = session.auth_data
        login = auth.login.decode() if isinstance(auth, LoginPassword) else None
        meta = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "login": login,
        }
        for ext, data in ((".eml", envelope.original_content or envelope.content),
                          (".json", json.dumps(meta).encode())):
            with open(name + ext + ".tmp", "wb") as f:
                f.write(data)
            os.rename(name + ext + ".tmp", name + ext)
        return "250 Message accepted for delivery"


def main():
    # AUTH without TLS is what this local test server is for.
    warnings.simplefilter("ignore")
    host, port, folder = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    os.makedirs(folder, exist_ok=True)
    kwargs = {}
    if len(sys.argv) >= 6:
        user, password = sys.argv[4].encode(), sys.argv[5].encode()

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = (isinstance(auth_data, LoginPassword)
                  and auth_data.login == user and auth_data.password == password)
            return AuthResult(success=ok, auth_data=auth_data if ok else None)

        kwargs = {"authenticator": authenticator, "auth_required": True,
                  "auth_require_tls": False}
    controller = Controller(Sink(folder), hostname=host, port=port, **kwargs)
    controller.start()
    print("ready", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
