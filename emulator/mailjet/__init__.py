"""The fake Mailjet: REST API v3, Send API v3.1 and App Connections → Segment.

`models` and `send` hold the state and the rules (plain Python); `routes` is the thin HTTP layer.
"""
