"""HTTP API codecs: each decodes its request into a Conversation and encodes parser events."""
