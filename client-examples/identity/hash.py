#!/usr/bin/env python3
"""Server-side (Python): the `userHash` of a signed-in user for a chat widget.

    WAYFINDER_IDENTITY_SECRET=wf_id_... python3 identity/hash.py USER_ID

Compute it on your server (Django, Flask, FastAPI...) with the widget's
identity secret and pass it to the page with the user id:
    wayfinder.identify({userId, userHash, traits: {email, plan}})
Never send the secret itself to a browser.
"""
import hashlib
import hmac
import os
import sys


def user_hash(identity_secret: str, user_id: str) -> str:
    """hex(HMAC-SHA256(identity_secret, user_id))."""
    return hmac.new(identity_secret.encode(), user_id.encode(), hashlib.sha256).hexdigest()


if __name__ == "__main__":
    secret = os.environ.get("WAYFINDER_IDENTITY_SECRET")
    if not secret or len(sys.argv) != 2:
        sys.exit("usage: WAYFINDER_IDENTITY_SECRET=wf_id_... python3 identity/hash.py USER_ID")
    print(user_hash(secret, sys.argv[1]))
