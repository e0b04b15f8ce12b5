"""Reporting: the figures and realism stages and the plots they draw; `compare`, two
evaluations of the same subjects side by side."""
