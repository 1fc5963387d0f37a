"""Operator commands: one module each, dispatched to by `turnout.cli`.

- `plan`   (`plan.py`, `snapshot.py`, `plan_text.py`): what a routing change does, in routing terms.
- `drill`  (`drill/`): the file's real policies replayed against loopback fakes that inject faults.
- `models` (`models.py`, `catalogue.py`): the file's models checked against what each provider offers.
- `check`  (`check.py`): each enabled provider's credentials.

They reuse the loader, the compiler, the Router and `turnout.testing`; none re-implements a policy. Each module
exposes `add_parser(subparsers)`, whose handler returns the exit code.
"""
