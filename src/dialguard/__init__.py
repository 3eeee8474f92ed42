"""dialguard: the outbound-call compliance gate between Asterisk and the phone network."""

__version__ = "0.1.0"
