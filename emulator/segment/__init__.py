"""The fake Segment: tracking API, sources, message store, profiles."""
