"""Notifiers of account lifecycle events (see registrations.events); one module each."""
