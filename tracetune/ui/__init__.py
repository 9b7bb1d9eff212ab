"""The web UI's templates, static assets and pure view helpers (the routes are in ``tracetune.server.ui*``)."""
