"""The only code that touches Redis keys: key names, connections, Lua scripts, atomic moves."""
