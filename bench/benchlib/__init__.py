"""Helpers of bench/compare: process plumbing (procs) and the scenarios (scen_*)."""
