"""Independent implementations against the gateway and the reference client (issue 38):
RFC 9421 signatures by the PyPI `http-message-signatures` library, DPoP proofs by PyJWT.
Nobody on this project wrote either. Keys come from a session file of `authsession client`.

  interop.py sign SESSION METHOD URL [BODY]      sign with http-message-signatures, send, print the status
  interop.py dpop SESSION METHOD URL VARIANT     a PyJWT DPoP proof (VARIANT: ok, htm, htu, ath, jwk,
                                                 stale, reuse), send, print the status(es)
  interop.py verify-server SESSION PORT          verify requests with http-message-signatures:
                                                 200 when one verifies, 401 otherwise
"""

import base64
import hashlib
import http.server
import json
import secrets
import sys
import time
import uuid

import jwt
import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from http_message_signatures import (HTTPMessageSigner, HTTPMessageVerifier,
                                     HTTPSignatureKeyResolver, algorithms)


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def load(path):
    saved = json.load(open(path))
    seed = base64.urlsafe_b64decode(saved["private_key"] + "==")
    return saved["device_session_id"], Ed25519PrivateKey.from_private_bytes(seed)


class Keys(HTTPSignatureKeyResolver):
    def __init__(self, key_id, private):
        self.key_id, self.private = key_id, private

    def resolve_private_key(self, key_id):
        assert key_id == self.key_id
        return self.private

    def resolve_public_key(self, key_id):
        if key_id != self.key_id:
            raise KeyError(key_id)
        return self.private.public_key()


def sign(path, method, url, body=None):
    key_id, private = load(path)
    request = requests.Request(method, url, data=body).prepare()
    covered = ["@method", "@authority", "@path"]
    if "?" in url:
        covered.append("@query")
    signer = HTTPMessageSigner(signature_algorithm=algorithms.ED25519, key_resolver=Keys(key_id, private))
    signer.sign(request, key_id=key_id, nonce=secrets.token_urlsafe(16), covered_component_ids=covered,
                body=body.encode() if body is not None else None)
    answer = requests.Session().send(request)
    print(answer.status_code)


def dpop(path, method, url, variant):
    key_id, private = load(path)
    public = private.public_key().public_bytes_raw()
    htu = url.split("?")[0]
    claims = {"htm": method, "htu": htu, "iat": int(time.time()), "jti": str(uuid.uuid4()),
              "ath": b64url(hashlib.sha256(key_id.encode()).digest())}
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64url(public)}
    signing = private
    if variant == "htm":
        claims["htm"] = "DELETE" if method != "DELETE" else "GET"
    elif variant == "htu":
        claims["htu"] = htu + "/other"
    elif variant == "ath":
        claims["ath"] = b64url(hashlib.sha256(b"another-token").digest())
    elif variant == "stale":
        claims["iat"] = int(time.time()) - 600
    elif variant == "jwk":
        signing = Ed25519PrivateKey.generate()
        jwk["x"] = b64url(signing.public_key().public_bytes_raw())
    proof = jwt.encode(claims, signing, algorithm="EdDSA", headers={"typ": "dpop+jwt", "jwk": jwk})
    headers = {"Authorization": f"DPoP {key_id}", "DPoP": proof}
    statuses = [requests.request(method, url, headers=headers).status_code]
    if variant == "reuse":
        statuses.append(requests.request(method, url, headers=headers).status_code)
    print(" ".join(map(str, statuses)))


def verify_server(path, port):
    key_id, private = load(path)
    verifier = HTTPMessageVerifier(signature_algorithm=algorithms.ED25519, key_resolver=Keys(key_id, private))

    class Handler(http.server.BaseHTTPRequestHandler):
        def handle_one(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            url = f"http://{self.headers['Host']}{self.path}"
            message = requests.Request(self.command, url, headers=dict(self.headers), data=body).prepare()
            try:
                results = verifier.verify(message, body=body, require_components=("@method", "@authority", "@path"))
                ok = len(results) == 1 and results[0].parameters["keyid"] == key_id
            except Exception as error:  # noqa: BLE001 -- any failure is a refusal, said in the answer
                ok, why = False, repr(error)
            else:
                why = "verified"
            self.send_response(200 if ok else 401)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(why.encode())

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = handle_one

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", int(port)), Handler)
    print("listening", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    {"sign": sign, "dpop": dpop, "verify-server": verify_server}[command](*args)
