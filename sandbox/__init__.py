"""Local HTTP stand-ins of EspoCRM and Advoware (a development, test and demo tool).

Start both with ``python -m sandbox`` or ``with sandbox.server.Sandbox() as sb: ...``;
see ``sandbox/README.md``. No sync logic lives here.
"""
