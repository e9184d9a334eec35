"""Hook implementations that ship with the core, registered like any external plugin."""
