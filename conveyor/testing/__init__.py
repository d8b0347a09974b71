"""Test support shipped with the engine, for connector plug-ins' own test suites
(``conformance``: the one suite every connector passes)."""
