"""The CLI verbs, one module each; ``liberate.cli`` parses arguments and dispatches here."""
