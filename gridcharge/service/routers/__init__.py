"""The routes of the HTTP API, one module per resource: :mod:`.sites`, :mod:`.sessions`, :mod:`.chargers` (the
firmware fetch), :mod:`.health`."""
