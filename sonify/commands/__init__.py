"""The sonify commands, one module per family; ``sonify.cli`` parses and dispatches."""
