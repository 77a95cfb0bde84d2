"""Reference partner registries (health, tax, land, business): real servers for the sandbox and the tests."""
