"""Local stand-ins for the systems Conveyor talks to, faithful to the interface facts in
DIALECTS.md: the demo's plant in a box and the tests' servers."""
