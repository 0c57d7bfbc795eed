"""Whole-system harness: the real web server and qcluster as subprocesses, fake Coder and Twilio."""
