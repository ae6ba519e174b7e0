"""mogsim's command line (installed as ``mogsim.cli``): thin typer commands over the library.

Each command lives in its own module with a ``register(app)`` function; :mod:`mogsim.cli.app` lists them.
"""
