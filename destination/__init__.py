"""Mailjet's side of Segment's partner "direct destination" contract.

Receives Segment identify calls and applies them to a Mailjet account through the public REST v3
API. It knows nothing of the emulator: give it a key ring (Segment authentication key → Mailjet
base URL + API key pair) and it runs unchanged against `https://api.mailjet.com/`.
"""
