"""Reporting: the figures and realism stages and the plots they draw."""
